"""Oracle check items for the int8 GEMM: every tile the dispatch table can pick
on a GPU, compiled for that GPU, must fit its shared memory.

``sglang-consumer-gpu check --gpu "RTX 4090"`` runs these next to the other
kernels' items (registered in ``sglang_consumer_gpu.oracle.checks.PROVIDERS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.int8.tiles import SAFE_TILE, Tile, table_for

#: (out dtype, has_bias, raw int32 accumulator) variants compiled per tile.
QUICK_VARIANTS: tuple[tuple[str, bool, bool], ...] = (("bfloat16", True, False),)
FULL_VARIANTS: tuple[tuple[str, bool, bool], ...] = (
    ("bfloat16", True, False),
    ("bfloat16", False, False),
    ("float16", True, False),
    ("float16", False, False),
    ("int32", False, True),
)


def tiles_for(spec: GpuSpec) -> list[Tile]:
    """Every tile :func:`~sglang_consumer_gpu.int8.tiles.select_tile` can return on ``spec``."""
    table = table_for(spec)
    return table.tiles() if table is not None else [SAFE_TILE]


def _resources(spec: GpuSpec, tile: Tile, dtype_name: str, has_bias: bool, raw: bool) -> list[Any]:
    import torch

    from sglang_consumer_gpu.int8.resources import tile_resources

    out_dtype = torch.bfloat16 if raw else getattr(torch, dtype_name)
    return [tile_resources(spec, tile, out_dtype=out_dtype, has_bias=has_bias, raw_acc=raw)]


def check_items(spec: GpuSpec, *, full: bool) -> Iterable[Any]:
    """One CheckItem per (tile, variant) the int8 path can launch on ``spec``."""
    from sglang_consumer_gpu.oracle.checks import CheckItem

    for tile in tiles_for(spec):
        for dtype_name, has_bias, raw in FULL_VARIANTS if full else QUICK_VARIANTS:
            label = f"{tile.label()} {dtype_name}{' +bias' if has_bias else ''}"
            yield CheckItem(
                area="int8",
                kernel="int8_scaled_mm_kernel",
                config=label,
                run=lambda tile=tile, d=dtype_name, b=has_bias, r=raw: _resources(spec, tile, d, b, r),
            )
