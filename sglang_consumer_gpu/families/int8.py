"""W8A8-INT8 linear layers: which int8 GEMM runs on a GPU (sgl-kernel's CUTLASS or the plugin's Triton), and its tiles.

The one answer to "what runs for this GEMM": :func:`~sglang_consumer_gpu.int8.backend.int8_backend_for`
names the route, :func:`~sglang_consumer_gpu.int8.tiles.select_tile` the Triton tile on the
plugin's route. The SGLang path (``int8_scaled_mm`` in ``w8a8_int8``) is the seam of
:mod:`sglang_consumer_gpu.patches.int8_scaled_mm`.

The ``check`` area ``int8`` (:class:`Int8Provider`): every tile the plugin's dispatch table can
pick on the GPU, compiled for it, must fit its shared memory. The kernel is the plugin's own, so
there is no SGLang baseline to compare.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.families.base import KernelRow, Provider
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.int8.backend import needed_on
from sglang_consumer_gpu.int8.tiles import SAFE_TILE, Tile, table_for
from sglang_consumer_gpu.oracle.core import Resources
from sglang_consumer_gpu.oracle.item import CheckItem
from sglang_consumer_gpu.oracle.kernels.int8 import tile_resources
from sglang_consumer_gpu.patches import int8_scaled_mm

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
    drives_sglang: bool = False

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        for tile in tiles_for(spec):
            for dtype_name, has_bias, raw in FULL_VARIANTS if full else QUICK_VARIANTS:
                yield CheckItem(
                    kernel="int8_scaled_mm_kernel",
                    config=f"{tile.label()} {dtype_name}{' +bias' if has_bias else ''}",
                    run=lambda t=tile, d=dtype_name, b=has_bias, r=raw: _resources(spec, t, d, b, r),
                )


@dataclass(frozen=True)
class Int8Family:
    """The int8 scaled GEMM (see the module docstring)."""

    name: str = "int8"
    patch_modules: tuple[Any, ...] = (int8_scaled_mm,)
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        return needed_on(spec)

    def check_providers(self) -> tuple[Provider, ...]:
        return (Int8Provider(),)

    def planner_rows(
        self, spec: GpuSpec, desc: Any, launch: Any, *, compile: bool, progress: Any = None
    ) -> tuple[list[KernelRow], list[str]]:
        return [], []


FAMILY = Int8Family()
