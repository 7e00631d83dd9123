"""What SGLang runs for the linear layers of an FP8 checkpoint on a GPU, or why it refuses the model.

The plugin patches no FP8 linear layer, because SGLang 0.5.23 (and 0.5.17) already serves them
on sm_80-sm_88, where no e4m3 GEMM exists: ``Fp8LinearMethod`` sets ``use_marlin`` from
``can_auto_enable_marlin_fp8()`` (``80 <= sm < 89``) and after loading repacks each weight for
its FP8 Marlin W8A16 kernel (``prepare_fp8_layer_for_marlin``; block, per-channel and per-tensor
scales, and a bf16 checkpoint quantized online); a compressed-tensors W8A8-FP8 scheme falls back
to its W8A16-FP8 scheme, the same Marlin kernel, below that scheme's minimum capability (89).
Two FP8 formats declare 89 for the whole model -- SGLang's own ``w8a8_fp8`` and ModelOpt FP8
(``modelopt_fp8``) -- and the model loader refuses them before any kernel runs, with a clear
message. Their weights load only through those methods, so the plugin cannot serve them there.

The facts are SGLang's (its ``get_min_capability`` per method, its Marlin range);
``tests/test_fp8_linear.py`` reads them back from SGLang's classes on virtual GPUs.
Pure functions of a GpuSpec and the checkpoint's quantization method.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_consumer_gpu.hardware.spec import GpuSpec

MARLIN = "marlin"
W8A8 = "fp8-w8a8"  # SGLang's e4m3 GEMMs: nothing to say about them
REFUSED = "refused"

#: SGLang's minimum compute capability (major * 10 + minor) for a model of each FP8 method:
#: ``Fp8Config``, ``W8A8Fp8Config`` and ``ModelOptFp8Config.get_min_capability()``; for
#: compressed-tensors the FP8 weight-only scheme's (``CompressedTensorsW8A16Fp8``).
MIN_CAPABILITY: dict[str, int] = {"fp8": 80, "compressed-tensors": 80, "w8a8_fp8": 89, "modelopt_fp8": 89}
MARLIN_COST = (
    "the weights stay fp8 (1 byte per parameter), repacked once at load into Marlin's layout with one scale "
    "per output channel and 128 inputs; activations are not quantized: bf16/fp16 math on tensor cores; the "
    "kernel is one of SGLang's JIT kernels, compiled with nvcc at its first use (the CUDA toolkit must be "
    "installed: doctor's 'nvcc for JIT builds' row)"
)


@dataclass(frozen=True)
class LinearPath:
    """``kind``: :data:`MARLIN`, :data:`W8A8` or :data:`REFUSED`; ``why``: one sentence a user reads."""

    kind: str
    why: str


def linear_path(spec: GpuSpec, method: str) -> LinearPath:
    """What SGLang does with the FP8 linear layers of a ``method`` checkpoint on ``spec``
    (``method`` as the planner names it: ``fp8``, ``compressed-tensors``, ``w8a8_fp8``, ``modelopt_fp8``)."""
    cap = spec.capability[0] * 10 + spec.capability[1]
    need = MIN_CAPABILITY[method]
    if cap < need:
        said = (
            f"Quantization scheme is not supported for the current GPU. Min capability: {need}."
            if method == "compressed-tensors"
            else f"The quantization method {method} is not supported for the current GPU. Minimum capability: "
            f"{need}. Current capability: {cap}."
        )
        instead = (
            "; the plugin cannot serve it there (its weights load only through that method): use the model's "
            "fp8 or compressed-tensors FP8 checkpoint (SGLang's Marlin path) or a 16-bit one"
            if spec.is_ampere_or_newer
            else ""
        )
        return LinearPath(REFUSED, f"SGLang refuses the {method} checkpoint on {spec.arch_name} at load: '{said}'{instead}")
    if not spec.supports_fp8_e4m3:  # SGLang draws its Marlin line at the GPU's e4m3: 80 <= sm < 89
        return LinearPath(MARLIN, f"fp8 linear layers run SGLang's FP8 Marlin W8A16 kernel on {spec.arch_name}: "
                                  f"{MARLIN_COST}")  # fmt: skip
    return LinearPath(W8A8, f"fp8 linear layers run SGLang's fp8 W8A8 GEMMs on {spec.arch_name}")
