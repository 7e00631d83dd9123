"""The weight-only FP8 fused-MoE launcher: one GEMM of a MoE layer, in SGLang's call convention.

:func:`fused_moe_weight_only` takes the tensors SGLang's ``invoke_fused_moe_kernel`` receives
from ``fused_experts`` (``_fused_moe_kernel_sequence`` in 0.5.16-0.5.23), for either GEMM:

* up: ``A`` the hidden states ``[M, K]``, ``B`` = ``w13`` ``[E, 2N, K]``, ``C`` ``[M * topk, 2N]``,
  ``top_k`` = topk, routing weights applied only with ``apply_router_weight_on_input``;
* down: ``A`` the activated intermediate ``[M * topk, N]``, ``B`` = ``w2`` ``[E, K, N]``, ``C``
  ``[M, topk, K]`` (or ``[1, M, K]`` at top-1), ``top_k`` = 1, routing weights applied.

``B`` is ``float8_e4m3fn`` (its bytes reach the kernel as ``uint8``); ``B_scale`` is SGLang's
layout for the quant scheme: block ``[E, ceil(n / bn), ceil(k / bk)]``, per-channel
``[E, n, 1]``, per-tensor ``[E]``. Shapes and layouts are checked before anything launches; a
call that does not match raises ``ValueError`` naming what differs.

Works on ``meta`` tensors (the oracle compiles through it) and under Triton's CPU interpreter.
"""

from __future__ import annotations

from typing import Any

import torch
import triton

from sglang_consumer_gpu.fp8 import kernel as k
from sglang_consumer_gpu.fp8.tiles import weight_only_config
from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape

#: Tiles are chosen for this GPU when none is visible (the CPU interpreter in tests).
_FALLBACK_SPEC = GpuSpec.for_arch(8, 6)
_ACTIVATIONS = (torch.bfloat16, torch.float16)


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def scale_kind(block_shape: Any, per_channel_quant: bool) -> int:
    """The kernel's ``SCALE`` for SGLang's quant flags."""
    if block_shape is not None and len(block_shape) == 2 and all(block_shape):
        return int(k.BLOCK)
    return int(k.CHANNEL if per_channel_quant else k.TENSOR)


def layer_shape(B: Any, C: Any, topk_ids: Any, block_shape: Any) -> MoeShape:
    """The MoE layer one GEMM belongs to, in SGLang's config convention (N = intermediate size
    per partition, K = hidden size): the up GEMM writes 2-D ``C`` ``[M * topk, 2N]``, the down
    GEMM 3-D ``C`` ``[M, topk, K]``."""
    E, n_out, k_in = (int(d) for d in B.shape)
    N, K = (n_out // 2, k_in) if C.dim() == 2 else (k_in, n_out)
    bs = (int(block_shape[0]), int(block_shape[1])) if block_shape is not None and all(block_shape) else None
    return MoeShape(E, N, K, int(topk_ids.shape[1]), "fp8_w8a8", bs)


def _scale_strides(
    kind: int, B_scale: Any, E: int, n: int, k_in: int, block_shape: Any
) -> tuple[int, int, int]:
    if kind == k.BLOCK:
        bn, bk = int(block_shape[0]), int(block_shape[1])
        want = (E, triton.cdiv(n, bn), triton.cdiv(k_in, bk))
        _require(
            tuple(B_scale.shape) == want, f"block scales must be {list(want)}, got {list(B_scale.shape)}"
        )
        return B_scale.stride(0), B_scale.stride(1), B_scale.stride(2)
    if kind == k.CHANNEL:
        _require(
            B_scale.dim() in (2, 3) and tuple(B_scale.shape[:2]) == (E, n) and B_scale.numel() == E * n,
            f"per-channel scales must be [{E}, {n}, 1], got {list(B_scale.shape)}",
        )
        return B_scale.stride(0), B_scale.stride(1), 0
    _require(B_scale.numel() == E, f"per-tensor scales must be [{E}], got {list(B_scale.shape)}")
    return B_scale.reshape(E).stride(0), 0, 0


def fused_moe_weight_only(
    A: Any,
    B: Any,
    C: Any,
    B_scale: Any,
    topk_weights: Any,
    topk_ids: Any,
    sorted_token_ids: Any,
    expert_ids: Any,
    num_tokens_post_padded: Any,
    *,
    mul_routed_weight: bool,
    top_k: int,
    block_m: int,
    block_shape: Any = None,
    per_channel_quant: bool = False,
    bias: Any = None,
    spec: GpuSpec | None = None,
    config: dict[str, int] | None = None,
) -> dict[str, int]:
    """One GEMM of the layer into ``C`` (see the module docstring); returns the config it ran
    (``config``, or :func:`~sglang_consumer_gpu.fp8.tiles.weight_only_config` for the GPU with
    ``BLOCK_SIZE_M`` = ``block_m``, the row block the routing buffers were aligned to)."""
    _require(A.dtype in _ACTIVATIONS, f"activations must be bfloat16 or float16, got {A.dtype}")
    _require(B.dtype in (torch.float8_e4m3fn, torch.uint8), f"weights must be float8_e4m3fn, got {B.dtype}")
    _require(C.dtype == A.dtype, f"output must be {A.dtype} like the activations, got {C.dtype}")
    _require(A.dim() == 2 and B.dim() == 3, f"A must be 2-D and B 3-D, got {A.dim()}-D and {B.dim()}-D")
    E, n, k_stored = (int(d) for d in B.shape)
    K = int(A.shape[1])
    _require(k_stored >= K, f"A's {K} columns exceed the weights' {k_stored}")
    _require(C.shape[-1] == n, f"C's last dimension must be the weights' {n} rows, got {C.shape[-1]}")
    _require(topk_weights.stride(1) == 1, "topk_weights must be contiguous along top-k")
    _require(sorted_token_ids.stride(0) == 1, "sorted_token_ids must be contiguous")
    kind = scale_kind(block_shape, per_channel_quant)
    s_e, s_n, s_k = _scale_strides(kind, B_scale, E, n, k_stored, block_shape)
    group_n, group_k = (int(block_shape[0]), int(block_shape[1])) if kind == k.BLOCK else (0, 0)
    if config is None:
        config = weight_only_config(
            int(topk_ids.shape[0]),
            layer_shape(B, C, topk_ids, block_shape),
            spec or current_spec() or _FALLBACK_SPEC,
            block_m,
        )
    bm, bn, bk = config["BLOCK_SIZE_M"], config["BLOCK_SIZE_N"], config["BLOCK_SIZE_K"]
    _require(bm == block_m, f"BLOCK_SIZE_M must stay {block_m} (the routing buffers' row block), got {bm}")
    _require(
        kind != k.BLOCK or group_k % bk == 0, f"BLOCK_SIZE_K {bk} must divide the scale block's {group_k}"
    )
    if bias is not None:
        _require(tuple(bias.shape) == (E, n), f"bias must be [{E}, {n}], got {list(bias.shape)}")
    EM = int(sorted_token_ids.shape[0])
    grid = (triton.cdiv(EM, bm) * triton.cdiv(n, bn),)
    k.fused_moe_fp8_weight_only_kernel[grid](
        A, B.view(torch.uint8), C, B_scale, bias, topk_weights,
        sorted_token_ids, expert_ids, num_tokens_post_padded,
        n, K, EM, int(topk_ids.numel()),
        A.stride(0), A.stride(1), B.stride(0), B.stride(1), B.stride(2), C.stride(-2), C.stride(-1),
        s_e, s_n, s_k,
        bias.stride(0) if bias is not None else 0, bias.stride(1) if bias is not None else 0,
        group_n=group_n, group_k=group_k, SCALE=kind, HAS_BIAS=bias is not None,
        MUL_ROUTED_WEIGHT=bool(mul_routed_weight), top_k=int(top_k), EVEN_K=K % bk == 0,
        BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk, GROUP_SIZE_M=config.get("GROUP_SIZE_M", 1),
        num_warps=config.get("num_warps", 4), num_stages=config.get("num_stages", 3),
    )  # fmt: skip
    return config


def decode_e4m3(codes: Any, dtype: Any) -> Any:
    """``float8_e4m3fn`` bytes (``uint8`` or e4m3) -> ``dtype`` (bf16/fp16) through the kernel's decoder."""
    flat = codes.reshape(-1).view(torch.uint8)
    out = torch.empty(flat.shape, dtype=dtype, device=flat.device)
    block = 1024
    k.e4m3_decode_kernel[(triton.cdiv(flat.numel(), block),)](flat, out, flat.numel(), BLOCK_SIZE=block)
    return out.reshape(codes.shape)
