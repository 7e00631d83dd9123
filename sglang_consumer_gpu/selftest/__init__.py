"""``selftest``: every kernel path the plugin chooses for this GPU and this SGLang, run and checked.

- :mod:`.choices`: what runs with the plugin on a GPU, per area, next to SGLang's own;
- :mod:`.plan`: which cases, as a function of the GpuSpec and the SGLang version (no GPU);
- :mod:`.run`: each case compiled, launched on random data with NaN-poisoned outputs and
  compared with a float32 reference through the measurement engine;
- :mod:`.report`: the PASS / FAIL / SKIP(reason) table, the JSON document, the exit status;
- :mod:`.live`: the live GPU (and why there is none).

The same cases run as ``sglang-consumer-gpu selftest`` and as ``pytest --pyargs
sglang_consumer_gpu.tests``.
"""
