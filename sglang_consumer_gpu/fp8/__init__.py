"""FP8 checkpoints on GPUs without e4m3 (sm_80-sm_88): for the experts the route, the tile and the
plugin's own weight-only Triton kernel; for the linear layers what SGLang itself runs or refuses
(:mod:`.linear`). Heavy imports (torch, triton) happen in :mod:`.ops`, :mod:`.kernel` and
:mod:`.layer` only."""

from __future__ import annotations

from sglang_consumer_gpu.fp8.route import SGLANG, WEIGHT_ONLY, MoeCall, route, weight_only_gpu

__all__ = ["SGLANG", "WEIGHT_ONLY", "MoeCall", "route", "weight_only_gpu"]
