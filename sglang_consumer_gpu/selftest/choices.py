"""What runs on a GPU once the plugin is installed, per kernel area, next to what SGLang alone runs.

The plugin's patches decide per GPU whether they act (``Patch.needed_on``); where one acts,
its answer comes from the same pure functions the patch calls (:func:`moe_choice`:
:func:`~sglang_consumer_gpu.moe.lookup.choose` and the ``_down`` file lookup, with SGLang's
own rule for the down config's BLOCK_SIZE_M; :func:`extend_tiles`/:func:`prefill_tiles`: the
attention patches' ``choose``/``rewrite_launch`` rule). Where it does not act, SGLang's own
choice runs. :func:`sglang_moe_choices` asks SGLang itself (its ``try_get_optimal_moe_config``
under a virtual GPU, the plugin's patches reverted) and :func:`sglang_moe_patched` asks it
with the patches applied: what a server really gets, to check the pure answer against.

Used by :mod:`sglang_consumer_gpu.selftest` (which kernel paths to test) and
:mod:`sglang_consumer_gpu.bench` (which two configs to time).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.lookup import choose, find_configs, nearest
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import ConfigKey

ExtendTile = tuple[int, int, int]  # (BLOCK_M, BLOCK_N, num_warps)
PrefillTile = tuple[int, int]  # (BLOCK, num_warps)


def moe_active(spec: GpuSpec) -> bool:
    """Do the plugin's fused-MoE config patches act on ``spec``?"""
    from sglang_consumer_gpu.patches import moe_config

    return all(p.needed_on(spec) for p in moe_config.PATCHES)


def extend_active(spec: GpuSpec) -> bool:
    from sglang_consumer_gpu.patches import attention_extend

    return bool(attention_extend.PATCH.needed_on(spec))


def prefill_active(spec: GpuSpec) -> bool:
    from sglang_consumer_gpu.patches import attention_prefill

    return bool(attention_prefill.PATCH.needed_on(spec))


def safety_net_active(spec: GpuSpec) -> bool:
    from sglang_consumer_gpu.patches import safety_net

    return all(p.needed_on(spec) for p in safety_net.PATCHES)


@dataclass(frozen=True)
class MoeChoice:
    """The fused-MoE configs one batch size runs with: up GEMM, down GEMM (None: the up
    config), and where they came from (``user``, ``bundled``, ``sglang``, ``heuristic`` ...)."""

    up: dict[str, Any]
    down: dict[str, Any] | None
    source: str
    path: str | None = None
    down_path: str | None = None


def shape_key(shape: MoeShape, *, down: bool = False) -> ConfigKey:
    bn, bk = shape.block_shape or (0, 0)
    return ConfigKey(shape.E, shape.N, shape.dtype, bn, bk, shape.per_channel_quant, down)


def moe_choice(spec: GpuSpec, shape: MoeShape, M: int) -> MoeChoice:
    """What the plugin's patched lookup gives SGLang for ``M`` tokens on ``spec`` (it acts
    there: :func:`moe_active`). The down config mirrors SGLang's ``try_get_optimal_moe_config``:
    the nearest entry of a ``_down`` file, its BLOCK_SIZE_M overridden by the up config's
    (both GEMMs share one routing sort)."""
    c = choose(M, shape, spec)
    down = None
    found = find_configs(shape_key(shape, down=True), spec)
    if found.configs:
        down = dict(found.configs[nearest(found.configs, M)])
        down["BLOCK_SIZE_M"] = c.config["BLOCK_SIZE_M"]
    return MoeChoice(dict(c.config), down, c.source, c.path, found.path if down else None)


@contextlib.contextmanager
def _quiet_sglang() -> Iterator[None]:
    """SGLang warns "Using default MoE kernel config" for every shape without a tuned file:
    here that is the expected answer, not news."""
    log = logging.getLogger("sglang")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _sglang_choices(
    spec: GpuSpec, shape: MoeShape, ms: Iterable[int], *, patched: bool
) -> dict[int, tuple[dict[str, Any], dict[str, Any] | None]]:
    from sglang_consumer_gpu.checks.moe import sglang_choice
    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    with _quiet_sglang(), virtual_gpu(spec, patched=patched):
        return {M: sglang_choice(shape, M) for M in ms}


def sglang_moe_choices(
    spec: GpuSpec, shape: MoeShape, ms: Iterable[int]
) -> dict[int, tuple[dict[str, Any], dict[str, Any] | None]]:
    """SGLang's own (up, down or None) per batch size on ``spec``, without the plugin."""
    return _sglang_choices(spec, shape, ms, patched=False)


def sglang_moe_patched(
    spec: GpuSpec, shape: MoeShape, ms: Iterable[int]
) -> dict[int, tuple[dict[str, Any], dict[str, Any] | None]]:
    """What SGLang's ``try_get_optimal_moe_config`` returns on ``spec`` with the plugin's
    patches applied (registered by :func:`~sglang_consumer_gpu.activation.activate`)."""
    return _sglang_choices(spec, shape, ms, patched=True)


# ------------------------------------------------------------------------------ attention


@contextlib.contextmanager
def _sglang_alone() -> Iterator[None]:
    """SGLang's own helpers inside the block, even where the plugin is active in this process."""
    from sglang_consumer_gpu.oracle.virtual import unpatched

    with unpatched():
        yield


def sglang_extend_blocks(
    spec: GpuSpec, dims: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], tuple[int, ...]]:
    """SGLang's own ``_get_block_sizes_for_extend_attention`` 6-tuple (BLOCK_DMODEL, BLOCK_DPE,
    BLOCK_DV, BLOCK_M, BLOCK_N, num_warps) per (Lq, Lv) on ``spec``: its capability branch."""
    import importlib

    from sglang_consumer_gpu.measure.attention import EXTEND
    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    ea = importlib.import_module(EXTEND)
    with virtual_gpu(spec, patched=False):
        return {(lq, lv): tuple(ea._get_block_sizes_for_extend_attention(lq, lv)) for lq, lv in dims}


def extend_tiles(spec: GpuSpec, lq: int, lv: int) -> tuple[ExtendTile, ExtendTile]:
    """(what runs with the plugin, what SGLang alone runs) for extend attention on ``spec``:
    the patch keeps SGLang's tile where it fits and otherwise takes the budget's tile."""
    return extend_tiles_for(spec, [(lq, lv)])[(lq, lv)]


def extend_tiles_for(
    spec: GpuSpec, dims: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], tuple[ExtendTile, ExtendTile]]:
    """:func:`extend_tiles` for several head-dim pairs at once."""
    from sglang_consumer_gpu.patches import attention_extend

    out = {}
    for (lq, lv), sglang in sglang_extend_blocks(spec, list(dims)).items():
        plugin = attention_extend.choose(spec, lq, lv, sglang) if extend_active(spec) else sglang
        out[(lq, lv)] = (tuple(plugin[3:6]), tuple(sglang[3:6]))
    return out  # type: ignore[return-value]


def prefill_tiles(spec: GpuSpec, head_dim: int, elem_bytes: int = 2) -> tuple[PrefillTile, PrefillTile]:
    """(with the plugin, SGLang alone) for context (prefill) attention on ``spec``: the
    patch's launch rule keeps SGLang's square tile where it fits."""
    from sglang_consumer_gpu.attention import prefill_tile, tile_fits
    from sglang_consumer_gpu.attention.model import next_pow2
    from sglang_consumer_gpu.measure.attention import sglang_prefill_tile

    with _sglang_alone():
        sglang = sglang_prefill_tile(head_dim, spec.capability)
    d = next_pow2(head_dim)
    if not prefill_active(spec) or tile_fits(spec, sglang[0], sglang[0], d, d, elem_bytes):
        return sglang, sglang
    tile = prefill_tile(spec, head_dim, elem_bytes)
    return (tile.block_m, tile.num_warps), sglang
