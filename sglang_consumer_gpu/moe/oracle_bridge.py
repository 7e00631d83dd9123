"""Shared memory of a fused-MoE config as the compile-only oracle measures it.

Prefers the oracle's kernel spec (``sglang_consumer_gpu.oracle.kernels.moe.moe_resources``,
which dry-runs SGLang's own launcher with meta tensors). Until that spec is
importable, compiles SGLang's ``fused_moe_kernel`` directly with the argument
list ``invoke_fused_moe_kernel`` builds (meta tensors: contiguous, 16-byte
aligned), for both GEMMs of the layer, and returns the larger number.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape

logger = logging.getLogger("sglang_consumer_gpu.moe")


def _freeze(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(config.items()))


def oracle_shared(spec: GpuSpec, shape: MoeShape, M: int, config: dict[str, Any]) -> int:
    """Bytes of shared memory per block, the larger of the up and down GEMM."""
    return _oracle_shared(spec, shape, M, _freeze(config))


@functools.lru_cache(maxsize=4096)
def _oracle_shared(spec: GpuSpec, shape: MoeShape, M: int, frozen: tuple[tuple[str, Any], ...]) -> int:
    return max(int(r.shared) for r in resources_both(spec, shape, M, dict(frozen)))


def resources_both(spec: GpuSpec, shape: MoeShape, M: int, config: dict[str, Any]) -> list[Any]:
    """``Resources`` of the up and the down GEMM for ``config`` (for ``check``)."""
    try:
        from sglang_consumer_gpu.oracle.kernels.moe import moe_resources_both

        both = moe_resources_both(
            spec,
            E=shape.E,
            N=shape.N,
            K=shape.K,
            topk=shape.topk,
            M=M,
            dtype=shape.dtype,
            block_shape=list(shape.block_shape) if shape.block_shape else None,
            config=config,
            per_channel_quant=shape.per_channel_quant,
        )
        return list(both.values())
    except Exception as exc:
        logger.debug("moe_resources_both failed for %s (%s); compiling directly", shape.label, exc)
        return [_direct(spec, shape, M, config, down) for down in (False, True)]


def _direct(spec: GpuSpec, shape: MoeShape, M: int, config: dict[str, Any], down: bool) -> Any:
    import torch
    import triton.language as tl
    from sglang.kernels.ops.moe.fused_moe_triton_kernels import fused_moe_kernel

    from sglang_consumer_gpu.oracle.core import compile_resources

    meta = torch.device("meta")
    qdt = {"fp8_w8a8": torch.float8_e4m3fn, "int8_w8a8": torch.int8}.get(shape.dtype or "", torch.bfloat16)
    n_out, k_in = (shape.K, shape.N) if down else (2 * shape.N, shape.K)
    rows = M * shape.topk if down else M
    bm = int(config["BLOCK_SIZE_M"])
    A = torch.empty(rows, k_in, dtype=qdt, device=meta)
    B = torch.empty(shape.E, n_out, k_in, dtype=qdt, device=meta)
    C = torch.empty(M, shape.topk, n_out, dtype=torch.bfloat16, device=meta)
    block = shape.block_shape
    a_s = b_s = None
    if shape.dtype in ("fp8_w8a8", "int8_w8a8"):
        if block:
            a_s = torch.empty(rows, -(-k_in // block[1]), dtype=torch.float32, device=meta)
            b_s = torch.empty(
                shape.E, -(-n_out // block[0]), -(-k_in // block[1]), dtype=torch.float32, device=meta
            )
        elif shape.per_channel_quant or shape.dtype == "int8_w8a8":
            a_s = torch.empty(rows, 1, dtype=torch.float32, device=meta)
            b_s = torch.empty(shape.E, n_out, 1, dtype=torch.float32, device=meta)
        else:
            a_s = torch.empty(1, dtype=torch.float32, device=meta)
            b_s = torch.empty(shape.E, dtype=torch.float32, device=meta)
    numel = M * shape.topk
    padded = numel * bm if numel < shape.E + 1 else numel + (shape.E + 1) * (bm - 1)
    padded = (padded + 3) // 4 * 4
    sorted_ids = torch.empty(padded, dtype=torch.int32, device=meta)
    expert_ids = torch.empty(-(-padded // bm), dtype=torch.int32, device=meta)
    ntp = torch.empty(1, dtype=torch.int32, device=meta)
    weights = torch.empty(M, shape.topk, dtype=torch.float32, device=meta)

    def s(t: Any, i: int, nd: int | None = None) -> int:
        if t is None or (nd is not None and t.ndim < nd):
            return 0
        return t.stride(i)

    args = (
        A, None, B, None, None, C, a_s, b_s, weights, sorted_ids, expert_ids, ntp, None,
        n_out, k_in, padded, numel,
        A.stride(0), A.stride(1), B.stride(0), B.stride(2), B.stride(1), 0, 0, C.stride(-2), C.stride(-1),
        s(a_s, 0) if a_s is not None and a_s.ndim == 2 else 0,
        s(a_s, 1) if a_s is not None and a_s.ndim == 2 else 0,
        s(b_s, 0) if b_s is not None and b_s.ndim >= 2 else 0,
        s(b_s, 2) if b_s is not None and b_s.ndim == 3 else 0,
        s(b_s, 1) if b_s is not None and b_s.ndim >= 2 else 0,
        block[0] if block else 0,
        block[1] if block else 0,
    )  # fmt: skip
    kw = {k: v for k, v in config.items() if k not in ("USE_TMA",)}
    res = compile_resources(
        spec,
        fused_moe_kernel,
        args,
        MUL_ROUTED_WEIGHT=down,
        top_k=1 if down else shape.topk,
        compute_type=tl.bfloat16,
        use_fp8_w8a8=shape.dtype == "fp8_w8a8",
        use_int8_w8a8=shape.dtype == "int8_w8a8",
        use_int8_w8a16=False,
        per_channel_quant=shape.per_channel_quant,
        even_Ks=k_in % int(config["BLOCK_SIZE_K"]) == 0,
        c_sorted=False,
        swap_ab=False,
        FUSE_ADD_TO_OUTPUT=False,
        A_OUTPUT_SLICES=1,
        A_OUTPUT_SLICE_WIDTH=0,
        A_OUTPUT_SLICE_K=0,
        MASK_OUTPUT=False,
        FUSE_SUM_ALL_REDUCE=False,
        ROUTER_TOPK=1,
        FUSE_SWIGLU=False,
        **kw,
    )
    return res
