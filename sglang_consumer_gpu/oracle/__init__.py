"""Compile-only shared-memory oracle: what a kernel would ask of a GPU that is not here.

Triton compiles for any target without a GPU. With a driver whose current
target is e.g. ``GPUTarget("cuda", 89, 32)``, a kernel's ``warmup`` (or a launch
with ``warmup=True``) returns the compiled kernel, and ``metadata.shared`` is the
exact shared memory the real GPU would be asked for. Compile for the real
target: sm_90 numbers are not sm_89 numbers (196,608 vs 262,144 bytes for the
same fused-MoE tile, measured on Triton 3.8).

The oracle makes SGLang answer for a GPU (:mod:`.virtual`) and compiles what it
launches (:mod:`.capture`); whether the plugin's patches act meanwhile is the
caller's choice (:func:`sglang_consumer_gpu.families.on_gpu`).
"""

from sglang_consumer_gpu.oracle.core import Resources, compile_only, compile_resources
from sglang_consumer_gpu.oracle.virtual import virtual_gpu

__all__ = ["Resources", "compile_only", "compile_resources", "virtual_gpu"]
