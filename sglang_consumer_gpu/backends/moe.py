"""MXFP4 mixture-of-experts (gpt-oss checkpoints, and FP8 checkpoints with MXFP4 experts):
which kernel runs the experts for SGLang's MoE runner on a GPU.

SGLang 0.5.x refuses Marlin for MXFP4 experts below sm_90 ("MXFP4 Marlin requires SM90+",
raised after the weights are loaded). The gate is test scope, not hardware
(sgl-project/sglang#33937: Marlin's MoE kernel guards ``__CUDA_ARCH__ >= 800``); without
Marlin an sm_8x GPU keeps MXFP4 packed only through OpenAI's ``triton_kernels``, which SGLang
uses at EP 1 when the package is installed and ``--quantization`` is not given. Otherwise
SGLang upcasts the experts to bf16 at load, about 3.8x their MXFP4 size.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_consumer_gpu.hardware.spec import GpuSpec

#: bf16 bits per weight over MXFP4's (4-bit values plus one 8-bit scale per 32).
UPCAST_FACTOR = 16 / (4 + 8 / 32)


def mxfp4_marlin_gate_opens(spec: GpuSpec) -> bool:
    """Where SGLang's gate closes but Marlin's kernel runs: sm_80 to sm_89."""
    return spec.has_marlin and spec.capability < (9, 0)


@dataclass(frozen=True)
class MoePath:
    """What runs MXFP4 experts for one MoE runner on one GPU."""

    runner: str
    kernel: str
    runs: bool  # with the plugin
    sglang_alone_runs: bool
    upcast: bool  # the experts are held in bf16, not MXFP4
    note: str


def mxfp4_moe_path(spec: GpuSpec, runner: str) -> MoePath:
    """The kernel behind SGLang's resolved ``moe_runner_backend`` for an MXFP4 checkpoint."""
    arch = spec.arch_name
    if runner == "marlin":
        if not spec.has_marlin:
            return MoePath(runner, "Marlin", False, False, False, f"Marlin needs sm_80+, not {arch}")
        if mxfp4_marlin_gate_opens(spec):
            return MoePath(
                runner,
                "Marlin W4A16",
                True,
                False,
                False,
                f'SGLang alone raises "MXFP4 Marlin requires SM90+" after loading the weights on {arch}; '
                "the plugin lifts that gate (Marlin's MoE kernel runs on sm_80+)",
            )
        return MoePath(runner, "Marlin W4A16", True, True, False, "")
    if runner == "flashinfer_mxfp4":
        runs = spec.capability[0] in (9, 10, 12)
        note = "" if runs else f"FlashInfer's MXFP4 MoE kernels are built for sm_90/sm_100/sm_120, not {arch}"
        return MoePath(runner, "FlashInfer MXFP4", runs, runs, False, note)
    if runner == "triton_kernel":
        return MoePath(runner, "triton_kernels (MXFP4 kept packed)", True, True, False, "")
    fix = (
        " (pass --moe-runner-backend marlin: the plugin lets Marlin run on this GPU)"
        if mxfp4_marlin_gate_opens(spec)
        else ""
    )
    return MoePath(
        runner,
        "SGLang's Triton fused MoE on bf16 experts",
        True,
        True,
        True,
        f"SGLang upcasts the MXFP4 experts to bf16 at load (x{UPCAST_FACTOR:.1f} their size){fix}",
    )
