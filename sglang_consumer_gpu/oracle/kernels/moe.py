"""Oracle spec for SGLang's fused-MoE Triton kernels: dry-run SGLang's own launcher.

:func:`moe_resources` calls SGLang's ``invoke_fused_moe_kernel`` itself, with
``meta`` tensors shaped and typed as ``fused_experts`` builds them
(``srt/layers/moe/moe_runner/triton_utils/fused_moe.py``), inside
:func:`~sglang_consumer_gpu.oracle.virtual.virtual_gpu` (SGLang's
capability switches -- swap-AB, PDL, CUDA quant paths -- answer for the spec)
and :func:`~sglang_consumer_gpu.oracle.capture.capture_launches` (Triton
compiles for the spec's arch, nothing launches). So the kernel's argument
list, constexprs and ``num_warps``/``num_stages`` are SGLang's, and
``metadata.shared`` is what that GPU would be asked for.

What is re-derived rather than SGLang-run:

- the routing buffers come from SGLang's own ``moe_align_block_size`` (its
  allocation code runs), but its fill kernels (``sgl_moe_align_block_size``,
  ``moe_align_small_numel``) are replaced by no-ops: they only write values
  into buffers it already allocated, and the values do not reach the compile;
- the intermediate caches and weight/scale tensors follow the shapes in
  ``fused_moe.py`` and the quant methods (``fp8.py``, ``w8a8_int8.py``,
  ``moe_wna16.py``); the ``meta`` device makes them contiguous and 16-byte
  aligned as real allocations are.

Shapes use SGLang's config-file convention: ``E`` experts, ``N`` the
intermediate size per partition (``w2.shape[2]``; the up GEMM ``w13`` has
``2N`` rows), ``K`` the hidden size, ``M`` tokens, ``topk`` experts per token.
Weight-only int8/int4 (``int8_w8a16``/``int4_w4a16``) run in SGLang 0.5.23 as
the Triton ``fused_moe_kernel_gptq_awq`` (``moe_wna16.py``, ``block_shape
[0, group_size]``), covered here with group size 128 unless ``block_shape``
says otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.oracle.capture import KernelLaunch, capture_launches
from sglang_consumer_gpu.oracle.core import Resources
from sglang_consumer_gpu.oracle.virtual import virtual_gpu
from sglang_consumer_gpu.patches import moe_config

MOE_KERNEL_NAMES = ("fused_moe_kernel", "fused_moe_kernel_gptq_awq")

#: Accepted ``dtype`` values (SGLang's ``get_config_dtype_str`` spellings, plus
#: None/"bf16"/"fp16" for unquantized) -> (weight kind, activation dtype name).
DTYPES: dict[str | None, str] = {
    None: "bf16",
    "bf16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "bfloat16": "bf16",
    "fp8_w8a8": "fp8_w8a8",
    "int8_w8a8": "int8_w8a8",
    "int8_w8a16": "int8_w8a16",
    "int4_w4a16": "int4_w4a16",
}
WNA16_GROUP_SIZE = 128
GEMMS = ("up", "down")


def _torch() -> Any:
    import torch

    return torch


@contextlib.contextmanager
def align_without_fill() -> Iterator[Any]:
    """SGLang's ``moe_align_block_size`` with its fill kernels made no-ops."""
    import importlib

    mod = importlib.import_module(moe_config.ALIGN.module)
    saved = {n: mod.__dict__.get(n) for n in ("sgl_moe_align_block_size", "_is_cuda")}
    mod.sgl_moe_align_block_size = lambda *a, **k: None
    mod._is_cuda = False  # skips the small-batch Triton fill (moe_align_small_numel)
    try:
        yield getattr(mod, moe_config.ALIGN.attr)
    finally:
        for name, value in saved.items():
            if value is None:
                mod.__dict__.pop(name, None)
            else:
                setattr(mod, name, value)


def _kind(dtype: str | None) -> str:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(
            f"unknown MoE dtype {dtype!r}; use one of: " + ", ".join(str(d) for d in DTYPES)
        ) from None


def _weights(kind: str, E: int, n_out: int, k_in: int, block_shape: list[int] | None, per_channel: bool):
    """(B, B_scale) as the quant method allocates them, on ``meta``."""
    torch = _torch()
    m = "meta"
    if kind in ("bf16", "fp16"):
        dt = torch.bfloat16 if kind == "bf16" else torch.float16
        return torch.empty(E, n_out, k_in, device=m, dtype=dt), None
    if kind in ("int8_w8a16", "int4_w4a16"):
        group = block_shape[1]
        pack = 2 if kind == "int4_w4a16" else 1
        b = torch.empty(E, n_out, k_in // pack, device=m, dtype=torch.uint8)
        return b, torch.empty(E, n_out, k_in // group, device=m, dtype=torch.bfloat16)
    wdt = torch.float8_e4m3fn if kind == "fp8_w8a8" else torch.int8
    b = torch.empty(E, n_out, k_in, device=m, dtype=wdt)
    f32 = {"device": m, "dtype": torch.float32}
    if block_shape:
        bn, bk = block_shape
        return b, torch.empty(E, -(-n_out // bn), -(-k_in // bk), **f32)
    if per_channel or kind == "int8_w8a8":
        return b, torch.empty(E, n_out, 1, **f32)
    return b, torch.empty(E, **f32)


def dry_run(
    spec: GpuSpec,
    *,
    E: int,
    N: int,
    K: int,
    topk: int,
    M: int,
    dtype: str | None,
    block_shape: list[int] | None,
    config: dict[str, Any],
    per_channel_quant: bool = False,
    gemm: str = "up",
    cache: Any = True,
) -> list[KernelLaunch]:
    """Run SGLang's ``invoke_fused_moe_kernel`` for one GEMM of the layer and
    return every kernel it compiled (the MoE kernel, plus any Triton
    activation-quant kernel the path runs)."""
    if gemm not in GEMMS:
        raise ValueError(f"gemm must be one of {GEMMS}, not {gemm!r}")
    if min(E, N, K, topk, M) <= 0:
        raise ValueError(f"MoE shape must be positive: E={E} N={N} K={K} topk={topk} M={M}")
    kind = _kind(dtype)
    if kind in ("int8_w8a16", "int4_w4a16") and not (block_shape and block_shape[1]):
        block_shape = [0, WNA16_GROUP_SIZE]
    if kind == "int8_w8a8" and not block_shape:
        # The launcher asserts it: int8 w8a8 without blocks is per-channel
        # weights with per-token activations (SGLang's w8a8_int8 method).
        per_channel_quant = True
    torch = _torch()
    import importlib

    import triton.language as tl

    fk = importlib.import_module(moe_config.LAUNCHER.module)
    act = torch.float16 if kind == "fp16" else torch.bfloat16
    compute_type = tl.float16 if act == torch.float16 else tl.bfloat16
    config = dict(config)
    config.pop("USE_TMA", None)  # TMA is opt-in per tuned file and needs sm_90; not modelled here
    m = "meta"

    with virtual_gpu(spec), align_without_fill() as align:
        topk_ids = torch.empty(M, topk, device=m, dtype=torch.int32)
        topk_weights = torch.empty(M, topk, device=m, dtype=torch.float32)
        sorted_ids, expert_ids, num_post = align(topk_ids, config["BLOCK_SIZE_M"], E)
        total = M * topk
        if gemm == "up":
            a = torch.empty(M, K, device=m, dtype=act)
            b, b_scale = _weights(kind, E, 2 * N, K, block_shape, per_channel_quant)
            c = torch.empty(total, 2 * N, device=m, dtype=act)
            mul_routed, top_k = False, topk
        else:
            a = torch.empty(total, N, device=m, dtype=act)
            b, b_scale = _weights(kind, E, K, N, block_shape, per_channel_quant)
            c = (
                torch.empty(M, topk, K, device=m, dtype=act)
                if topk != 1
                else torch.empty(M, K, device=m, dtype=act).unsqueeze(0)
            )
            mul_routed, top_k = True, 1
        with capture_launches(spec, cache=cache) as launches:
            getattr(fk, moe_config.LAUNCHER.attr)(
                a,
                b,
                None,
                c,
                None,
                b_scale,
                None,
                topk_weights,
                topk_ids,
                sorted_ids,
                expert_ids,
                num_post,
                mul_routed,
                top_k,
                config,
                compute_type=compute_type,
                use_fp8_w8a8=kind == "fp8_w8a8",
                use_int8_w8a8=kind == "int8_w8a8",
                use_int8_w8a16=kind == "int8_w8a16",
                use_int4_w4a16=kind == "int4_w4a16",
                per_channel_quant=per_channel_quant,
                block_shape=block_shape,
            )
    return launches


def moe_gemm_resources(spec: GpuSpec, *, gemm: str = "up", **kwargs: Any) -> Resources:
    """Resources of the fused-MoE kernel for one GEMM (``"up"``: w13, ``"down"``: w2).

    The kernel name is suffixed with the GEMM (``fused_moe_kernel:up``)."""
    launches = dry_run(spec, gemm=gemm, **kwargs)
    moe = [x for x in launches if x.kernel in MOE_KERNEL_NAMES]
    if not moe:
        raise RuntimeError(f"SGLang's launcher compiled no MoE kernel (got {[x.kernel for x in launches]})")
    res = moe[-1].resources
    return dataclasses.replace(res, kernel=f"{res.kernel}:{gemm}")


def moe_resources_both(spec: GpuSpec, **kwargs: Any) -> dict[str, Resources]:
    """Resources of both GEMMs of the layer, by ``"up"``/``"down"``."""
    return {g: moe_gemm_resources(spec, gemm=g, **kwargs) for g in GEMMS}


def moe_resources(
    spec: GpuSpec,
    *,
    E: int,
    N: int,
    K: int,
    topk: int,
    M: int,
    dtype: str | None,
    block_shape: list[int] | None,
    config: dict[str, Any],
    per_channel_quant: bool = False,
) -> Resources:
    """The binding resources of the layer for ``config``: of the up (w13) and
    down (w2) GEMMs, the one needing more shared memory (both use the config)."""
    both = moe_resources_both(
        spec,
        E=E,
        N=N,
        K=K,
        topk=topk,
        M=M,
        dtype=dtype,
        block_shape=block_shape,
        config=config,
        per_channel_quant=per_channel_quant,
    )
    return max(both.values(), key=lambda r: r.shared)


def shape_args(shape: MoeShape) -> dict[str, Any]:
    """This module's layer keywords (``E``, ``N``, ``K``, ``topk``, ``dtype``,
    ``block_shape``, ``per_channel_quant``) for the MoE package's :class:`MoeShape`."""
    return {
        "E": shape.E,
        "N": shape.N,
        "K": shape.K,
        "topk": shape.topk,
        "dtype": shape.dtype,
        "block_shape": list(shape.block_shape) if shape.block_shape else None,
        "per_channel_quant": shape.per_channel_quant,
    }


def layer_shared(spec: GpuSpec, shape: MoeShape, M: int, config: dict[str, Any]) -> int:
    """Bytes of shared memory per block ``config`` needs on ``spec``: the larger
    of the layer's two GEMMs (cached per process, and on disk as an answer:
    :func:`cached_layer_shared`). Raises when SGLang's launcher does (the reason is the answer)."""
    return _layer_shared(spec, shape, M, tuple(sorted(config.items())))


def _answer_key(spec: GpuSpec, shape: MoeShape, M: int, frozen: tuple[tuple[str, Any], ...]) -> str | None:
    """The on-disk answer's key: everything the compile depends on, read without importing SGLang
    or Triton (their versions from the package metadata), so a cached answer costs milliseconds."""
    from sglang_consumer_gpu.oracle.cache import cache_key
    from sglang_consumer_gpu.versions import installed_version

    sglang, triton = installed_version("sglang"), installed_version("triton")
    if not sglang or not triton:
        return None
    return cache_key(answer="moe-layer-shared", sglang=sglang, triton=triton, arch=spec.arch, M=M,
                     config=frozen, **shape_args(shape))  # fmt: skip


def cached_layer_shared(spec: GpuSpec, shape: MoeShape, M: int, config: dict[str, Any]) -> int | None:
    """:func:`layer_shared`'s answer if an earlier compile left it on disk, else None (no compile)."""
    from sglang_consumer_gpu.oracle.cache import default_cache

    cache, key = default_cache(), _answer_key(spec, shape, M, tuple(sorted(config.items())))
    entry = cache.get(key) if cache is not None and key is not None else None
    return entry["shared"] if entry is not None else None


@functools.lru_cache(maxsize=4096)
def _layer_shared(spec: GpuSpec, shape: MoeShape, M: int, frozen: tuple[tuple[str, Any], ...]) -> int:
    from sglang_consumer_gpu.oracle.cache import default_cache

    r = moe_resources(spec, M=M, config=dict(frozen), **shape_args(shape))
    cache, key = default_cache(), _answer_key(spec, shape, M, frozen)
    if cache is not None and key is not None:
        cache.put(key, {"kernel": r.kernel, "shared": r.shared, "num_warps": r.num_warps, "num_stages": r.num_stages})
    return r.shared
