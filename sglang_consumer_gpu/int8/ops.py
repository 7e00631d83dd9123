"""``int8_scaled_mm`` with sgl-kernel's signature, layouts and checks, on Triton.

``int8_scaled_mm(mat_a, mat_b, scales_a, scales_b, out_dtype, bias=None)``:
``mat_a`` [M, K] int8 row-major (per-token quantised activations), ``mat_b``
[K, N] int8 column-major (the weight stored [N, K], passed as ``.t()``),
``scales_a`` M float32 (shape [M, 1] or [M]), ``scales_b`` N float32, ``bias``
N of ``out_dtype``; returns [M, N] ``out_dtype`` (fp16 or bf16). The checks and
their messages are sgl-kernel 0.4.10's, so a caller sees the same errors from
either path.
"""

from __future__ import annotations

import os

import torch
import triton

from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.int8.kernel import int8_scaled_mm_kernel
from sglang_consumer_gpu.int8.tiles import Tile, select_tile

_OUT_DTYPES = (torch.float16, torch.bfloat16)
#: Tiles are chosen for this GPU when no GPU is visible (Triton's CPU
#: interpreter in tests): the smallest-shared-memory class the tables cover.
_FALLBACK_SPEC = GpuSpec.for_arch(8, 9)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_mats(mat_a: torch.Tensor, mat_b: torch.Tensor) -> None:
    if not _interpreting():
        _check(mat_a.is_cuda, "mat_a must be a CUDA tensor")
        _check(mat_b.is_cuda, "mat_b must be a CUDA tensor")
    _check(mat_a.dim() == 2, "mat_a must be a 2D tensor")
    _check(mat_b.dim() == 2, "mat_b must be a 2D tensor")
    _check(mat_a.stride(1) == 1, "mat_a must be a row major tensor")
    _check(mat_b.stride(0) == 1, "mat_b must be a column major tensor")
    _check(mat_a.size(1) == mat_b.size(0), "mat_a and mat_b shapes cannot be multiplied")
    _check(mat_a.size(1) % 16 == 0, "mat_a.size(1) must be multiple of 16 for memory alignment")
    _check(mat_b.size(0) % 16 == 0, "mat_b.size(0) must be multiple of 16 for memory alignment")
    _check(mat_b.size(1) % 8 == 0, "mat_b.size(1) must be multiple of 8 for memory alignment")
    _check(mat_a.dtype == torch.int8, "mat_a must be Int8")
    _check(mat_b.dtype == torch.int8, "mat_b must be Int8")


def _output(
    out: torch.Tensor | None, m: int, n: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    if out is None:
        return torch.empty((m, n), dtype=dtype, device=device)
    _check(tuple(out.shape) == (m, n), f"out must have shape [{m}, {n}], got {list(out.shape)}")
    _check(out.dtype == dtype, f"out must be {dtype}, got {out.dtype}")
    _check(out.device == device, "out must be on mat_a's device")
    return out


def _tile_for(m: int, n: int, k: int, spec: GpuSpec | None) -> Tile:
    spec = spec if spec is not None else (current_spec() or _FALLBACK_SPEC)
    return select_tile(spec, m, n, k)


def _launch(
    mat_a: torch.Tensor,
    mat_b: torch.Tensor,
    scales_a: torch.Tensor | None,
    scales_b: torch.Tensor | None,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    tile: Tile,
    raw_acc: bool,
) -> None:
    m, k = mat_a.shape
    n = mat_b.shape[1]
    if m == 0 or n == 0:
        return
    grid = (triton.cdiv(m, tile.block_m) * triton.cdiv(n, tile.block_n),)
    dummy = out  # never read: HAS_BIAS / RAW_ACC are constexprs
    int8_scaled_mm_kernel[grid](
        mat_a,
        mat_b,
        scales_a if scales_a is not None else dummy,
        scales_b if scales_b is not None else dummy,
        bias if bias is not None else dummy,
        out,
        m,
        n,
        k,
        mat_a.stride(0),
        mat_a.stride(1),
        mat_b.stride(0),
        mat_b.stride(1),
        out.stride(0),
        out.stride(1),
        HAS_BIAS=bias is not None,
        RAW_ACC=raw_acc,
        EVEN_K=k % tile.block_k == 0,
        **tile.launch_kwargs(),
    )


def int8_scaled_mm(
    mat_a: torch.Tensor,
    mat_b: torch.Tensor,
    scales_a: torch.Tensor,
    scales_b: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
    *,
    spec: GpuSpec | None = None,
    tile: Tile | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Drop-in for ``sgl_kernel.int8_scaled_mm`` (see the module docstring).

    ``spec`` (default: the current GPU) picks the tile from the dispatch table;
    ``tile`` forces one (tuning and tests); ``out`` (any strides, [M, N] of
    ``out_dtype``) receives the result (correctness runs pass poisoned buffers).
    """
    _check_mats(mat_a, mat_b)
    _check(out_dtype in _OUT_DTYPES, "out_dtype must be Half or BFloat16")
    m, n = mat_a.size(0), mat_b.size(1)
    _check(scales_a.numel() == m, "size of scales_a is not matched")
    _check(scales_b.numel() == n, "size of scales_b is not matched")
    _check(scales_a.is_contiguous(), "scales_a must be contiguous")
    _check(scales_b.is_contiguous(), "scales_b msut be contiguous")  # sic: sgl-kernel's message
    _check(scales_a.dtype == torch.float32, "scales_a must be Float32")
    _check(scales_b.dtype == torch.float32, "scales_b must be Float32")
    if bias is not None:
        _check(bias.numel() == n, "size of bias is not matched")
        _check(bias.is_contiguous(), "bias must be contiguous")
        _check(bias.dtype == out_dtype, "bias dtype must match output dtype")
    out = _output(out, m, n, out_dtype, mat_a.device)
    tile = tile if tile is not None else _tile_for(m, n, mat_a.size(1), spec)
    _launch(mat_a, mat_b, scales_a, scales_b, bias, out, tile, raw_acc=False)
    return out


def int8_mm_int32(
    mat_a: torch.Tensor,
    mat_b: torch.Tensor,
    *,
    spec: GpuSpec | None = None,
    tile: Tile | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The kernel's raw int32 accumulator, ``mat_a @ mat_b`` exactly (what
    ``torch._int_mm`` returns): the check that accumulation loses nothing."""
    _check_mats(mat_a, mat_b)
    m, n = mat_a.size(0), mat_b.size(1)
    out = _output(out, m, n, torch.int32, mat_a.device)
    tile = tile if tile is not None else _tile_for(m, n, mat_a.size(1), spec)
    _launch(mat_a, mat_b, None, None, None, out, tile, raw_acc=True)
    return out
