"""Oracle spec for the plugin's Triton int8 scaled GEMM: shared memory of a tile on a
GPU that is not present.

The kernel (:mod:`sglang_consumer_gpu.int8.kernel`) is compiled with the
arguments its launcher (:mod:`sglang_consumer_gpu.int8.ops`) passes, built from
``meta`` tensors laid out as SGLang passes them.
"""

from __future__ import annotations

from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.int8.tiles import Tile
from sglang_consumer_gpu.oracle.core import Resources, compile_resources

# A representative problem: every dimension a multiple of 16, as real layers are,
# so the compiled code (vectorised, pipelined loads) is the one real launches get.
_M, _N, _K = 4096, 4096, 4096


def kernel_args(
    m: int = _M,
    n: int = _N,
    k: int = _K,
    *,
    out_dtype: Any = None,
    has_bias: bool = True,
    raw_acc: bool = False,
) -> tuple[Any, ...]:
    """Launcher arguments built from meta tensors, laid out as SGLang passes them
    (row-major A, column-major B, contiguous scales and output)."""
    import torch

    out_dtype = torch.bfloat16 if out_dtype is None else out_dtype
    meta = torch.device("meta")
    a = torch.empty((m, k), dtype=torch.int8, device=meta)
    b = torch.empty((n, k), dtype=torch.int8, device=meta).t()
    sa = torch.empty((m, 1), dtype=torch.float32, device=meta)
    sb = torch.empty((n,), dtype=torch.float32, device=meta)
    bias = torch.empty((n,), dtype=out_dtype, device=meta) if has_bias else None
    c = torch.empty((m, n), dtype=torch.int32 if raw_acc else out_dtype, device=meta)
    return (
        a,
        b,
        sa,
        sb,
        bias,
        c,
        m,
        n,
        k,
        a.stride(0),
        a.stride(1),
        b.stride(0),
        b.stride(1),
        c.stride(0),
        c.stride(1),
    )


def tile_resources(
    spec: GpuSpec, tile: Tile, *, out_dtype: Any = None, has_bias: bool = True, raw_acc: bool = False
) -> Resources:
    """Compile the int8 kernel with ``tile`` for ``spec`` and report its shared memory."""
    from sglang_consumer_gpu.int8.kernel import int8_scaled_mm_kernel

    kw = tile.launch_kwargs()
    return compile_resources(
        spec,
        int8_scaled_mm_kernel,
        kernel_args(out_dtype=out_dtype, has_bias=has_bias, raw_acc=raw_acc),
        HAS_BIAS=has_bias,
        RAW_ACC=raw_acc,
        EVEN_K=_K % tile.block_k == 0,
        **kw,
    )
