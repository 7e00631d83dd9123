"""What ``sglang-consumer-gpu check`` compiles, and what its exit status says (:mod:`.registry`).

The areas are the families' ``check_providers`` (:mod:`sglang_consumer_gpu.families`); each
item compiles on the compile-only oracle (:mod:`sglang_consumer_gpu.oracle`) when ``check``
runs it.
"""
