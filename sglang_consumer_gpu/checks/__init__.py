"""What ``sglang-consumer-gpu check`` compiles: :class:`~.item.CheckItem` and one
provider object per area (:mod:`.moe`, :mod:`.attention`, :mod:`.int8`, and
SGLang's own choices as the baselines), run by :mod:`.registry`.

Providers list their items quickly; each item compiles on the compile-only
oracle (:mod:`sglang_consumer_gpu.oracle`) when ``check`` runs it.
"""
