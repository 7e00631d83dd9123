"""Derive the fused-MoE shape of a model from its Hugging Face ``config.json``.

Covers the config spellings of the MoE families people run on consumer GPUs:
Mixtral (``num_local_experts``, ``intermediate_size``), Qwen2/3-MoE and
Qwen3-Next (``num_experts``, ``moe_intermediate_size``), DeepSeek-V2/V3/R1 and
GLM-4.5 (``n_routed_experts``), gpt-oss (``num_local_experts``). N is divided
by the tensor-parallel size, as SGLang shards it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.moe.shape import MoeShape

_EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
_TOPK_KEYS = ("num_experts_per_tok", "moe_topk", "top_k", "experts_per_token")
_INTER_KEYS = ("moe_intermediate_size", "intermediate_size")


def _first(cfg: dict[str, Any], keys: tuple[str, ...], what: str, path: Path) -> int:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and v > 0:
            return v
    raise ValueError(f"{path}: no {what} ({' / '.join(keys)}) in the model config; is this a MoE model?")


def _dtype(cfg: dict[str, Any]) -> tuple[str | None, tuple[int, int] | None, bool]:
    q = cfg.get("quantization_config") or {}
    method = str(q.get("quant_method", "")).lower()
    if method == "fp8":
        block = q.get("weight_block_size")
        bs = (int(block[0]), int(block[1])) if isinstance(block, list) and len(block) == 2 else None
        return "fp8_w8a8", bs, False
    if method in ("w8a8_int8", "int8"):
        return "int8_w8a8", None, True
    if method == "w8a8_fp8":
        return "fp8_w8a8", None, False
    if method == "compressed-tensors":
        groups = q.get("config_groups") or {}
        for g in groups.values():
            w = (g or {}).get("weights") or {}
            if w.get("type") == "float" and w.get("num_bits") == 8:
                return "fp8_w8a8", None, w.get("strategy") == "channel"
            if w.get("type") == "int" and w.get("num_bits") == 8 and (g.get("input_activations") or {}):
                return "int8_w8a8", None, w.get("strategy") == "channel"
    if method:
        raise ValueError(
            f"quantization {method!r} does not run SGLang's Triton fused-MoE kernel with a tunable "
            "config the plugin knows; pass --E/--N/--K/--topk/--dtype instead"
        )
    return None, None, False


def shape_from_model(path_or_dir: str, tp: int = 1) -> MoeShape:
    """The shape SGLang's fused MoE sees for this model at tensor parallelism ``tp``."""
    path = Path(path_or_dir).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"{path_or_dir}: no such config.json (give a local model directory or config file)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the model config: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: not a JSON object")
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers
        cfg = {**cfg, **cfg["text_config"]}
    if tp <= 0:
        raise ValueError(f"--tp must be positive, got {tp}")
    E = _first(cfg, _EXPERT_KEYS, "expert count", path)
    topk = _first(cfg, _TOPK_KEYS, "experts-per-token", path)
    inter = _first(cfg, _INTER_KEYS, "MoE intermediate size", path)
    K = _first(cfg, ("hidden_size",), "hidden size", path)
    if inter % tp:
        raise ValueError(f"intermediate size {inter} is not divisible by --tp {tp}")
    dtype, block, per_channel = _dtype(cfg)
    return MoeShape(E, inter // tp, K, topk, dtype, block, per_channel)
