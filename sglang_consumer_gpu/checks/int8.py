"""The int8 ``check`` provider: every tile the plugin's int8 GEMM dispatch table can pick
on a GPU, compiled for that GPU, must fit its shared memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sglang_consumer_gpu.checks.item import CheckItem
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.int8.tiles import SAFE_TILE, Tile, table_for
from sglang_consumer_gpu.oracle.core import Resources
from sglang_consumer_gpu.oracle.kernels.int8 import tile_resources

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


def _resources(spec: GpuSpec, tile: Tile, dtype_name: str, has_bias: bool, raw: bool) -> Resources:
    import torch

    out_dtype = torch.bfloat16 if raw else getattr(torch, dtype_name)
    return tile_resources(spec, tile, out_dtype=out_dtype, has_bias=has_bias, raw_acc=raw)


@dataclass(frozen=True)
class Int8Provider:
    """The Triton int8 scaled GEMM's tiles (the plugin's own kernel: no baseline)."""

    area: str = "int8"
    baseline: bool = False

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        for tile in tiles_for(spec):
            for dtype_name, has_bias, raw in FULL_VARIANTS if full else QUICK_VARIANTS:
                yield CheckItem(
                    kernel="int8_scaled_mm_kernel",
                    config=f"{tile.label()} {dtype_name}{' +bias' if has_bias else ''}",
                    run=lambda t=tile, d=dtype_name, b=has_bias, r=raw: _resources(spec, t, d, b, r),
                )


INT8 = Int8Provider()
