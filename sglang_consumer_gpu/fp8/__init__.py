"""FP8 fused MoE on GPUs without e4m3 (sm_80-sm_88): the route, the tile, and the plugin's own
weight-only Triton kernel. Heavy imports (torch, triton) happen in :mod:`.ops`, :mod:`.kernel`
and :mod:`.layer` only."""

from __future__ import annotations

from sglang_consumer_gpu.fp8.route import SGLANG, WEIGHT_ONLY, MoeCall, route, weight_only_gpu

__all__ = ["SGLANG", "WEIGHT_ONLY", "MoeCall", "route", "weight_only_gpu"]
