"""Reading a model: a local directory, a ``config.json``, or a Hugging Face id
already in the local HF cache (never a download), as a plain description.

The one entry point for the planner (``doctor --model``), ``moe-config``,
``bench`` and ``tune-moe``::

    desc = load_model("Qwen/Qwen3-30B-A3B-FP8")      # ModelDescription
    shape = moe_shape(desc, tp=2)                      # MoeShape as SGLang's fused MoE sees it
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sglang_consumer_gpu.models.config import (
    ModelConfigError,
    QuantizationNotUnderstood,
    describe,
    parse_quantization,
    quantization_from_flag,
)
from sglang_consumer_gpu.models.description import Attention, ModelDescription, Moe, Quantization
from sglang_consumer_gpu.models.resolve import ModelFiles, read_config, resolve
from sglang_consumer_gpu.moe.shape import MoeShape

__all__ = [
    "Attention",
    "ModelConfigError",
    "ModelDescription",
    "ModelFiles",
    "Moe",
    "Quantization",
    "QuantizationNotUnderstood",
    "describe",
    "load_model",
    "moe_shape",
    "parse_quantization",
    "quantization_from_flag",
    "resolve",
]


def load_model(ref: str, *, quantization: str | None = None) -> ModelDescription:
    """Describe the model ``ref`` names. ``quantization`` is SGLang's ``--quantization``
    flag: it overrides what the config says (SGLang's own rule)."""
    files = resolve(ref)
    cfg = read_config(files)
    name = ref if files.source == "Hugging Face cache" else Path(files.model_dir).name or ref
    try:
        desc = describe(cfg, name=name, config_path=str(files.config_path))
    except QuantizationNotUnderstood:
        if quantization is None:
            raise
        desc = describe({k: v for k, v in cfg.items() if k != "quantization_config"}, name=name)
    if quantization:
        desc = desc.with_quantization(quantization_from_flag(quantization))
    return replace(desc, config_path=str(files.config_path))


def moe_shape(desc: ModelDescription, tp: int = 1, ep: int = 1) -> MoeShape:
    """The fused-MoE problem SGLang runs on one GPU: ``E/ep`` local experts, each
    ``N = moe_intermediate / (tp/ep)`` wide (SGLang's MoE TP size is ``tp/ep``)."""
    if desc.moe is None or not desc.moe_layers:
        raise ModelConfigError(f"{desc.name}: not a MoE model (no expert count in its config)")
    if tp <= 0 or ep <= 0:
        raise ModelConfigError(f"--tp and --ep must be positive (got tp={tp}, ep={ep})")
    if tp % ep:
        raise ModelConfigError(f"--ep {ep} must divide --tp {tp} (SGLang splits experts inside the TP group)")
    moe_tp = tp // ep
    if desc.moe.experts % ep:
        raise ModelConfigError(f"{desc.moe.experts} experts are not divisible by --ep {ep}")
    if desc.moe.intermediate % moe_tp:
        raise ModelConfigError(
            f"MoE intermediate size {desc.moe.intermediate} is not divisible by the MoE TP size {moe_tp} (tp/ep)"
        )
    q = desc.quantization
    if q.moe_dtype == "other":
        raise ModelConfigError(
            f"{desc.name}: {q.method} experts do not run SGLang's Triton fused-MoE kernel (no tunable config)"
        )
    return MoeShape(
        desc.moe.experts // ep,
        desc.moe.intermediate // moe_tp,
        desc.hidden,
        desc.moe.topk,
        q.moe_dtype,
        q.block,
        q.per_channel and q.moe_dtype in ("fp8_w8a8", "int8_w8a8"),
    )
