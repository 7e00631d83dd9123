"""The selftest as pytest tests, shipped with the package: ``pytest --pyargs sglang_consumer_gpu.tests``.

One test per case of the selftest's plan for the live GPU and the installed SGLang (the same
cases ``sglang-consumer-gpu selftest`` runs; ``SGLANG_CONSUMER_GPU_SELFTEST=quick`` for the
quick subset). A case the plan skips is a skipped test with the plan's reason; without a GPU
there is one skipped test that says why.
"""
