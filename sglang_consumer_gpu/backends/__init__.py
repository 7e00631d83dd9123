"""Which of SGLang's backends have kernels for a GPU, and what the plugin picks where SGLang's
own choice has none. Pure functions of a :class:`~sglang_consumer_gpu.hardware.GpuSpec`
(the kernel-library facts live on the hardware model); docs/backends.md has the full list
of SGLang's capability checks these answer."""

from sglang_consumer_gpu.backends.attention import (
    FALLBACK,
    Steer,
    attention_runs,
    checks_backends,
    steer_attention,
    why_no_kernels,
)
from sglang_consumer_gpu.backends.moe import MoePath, mxfp4_marlin_gate_opens, mxfp4_moe_path

__all__ = [
    "FALLBACK",
    "MoePath",
    "Steer",
    "attention_runs",
    "checks_backends",
    "mxfp4_marlin_gate_opens",
    "mxfp4_moe_path",
    "steer_attention",
    "why_no_kernels",
]
