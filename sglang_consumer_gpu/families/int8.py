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

from sglang_consumer_gpu.families.base import Family, Provider
from sglang_consumer_gpu.families.cases import FAIL, PASS, SKIP, Case, Request, Result, Runner
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


# ------------------------------------------------------------------------------ selftest


#: int8 GEMM (N, K) layers (Llama-3-8B qkv, Qwen2.5-7B down-like, Llama-3-70B TP4 up, DeepSeek
#: q_a) and token counts; (out dtype, bias) rotates over the cases.
INT8_NK_QUICK: tuple[tuple[int, int], ...] = ((6144, 4096), (4096, 14336))
INT8_NK_FULL: tuple[tuple[int, int], ...] = ((6144, 4096), (4096, 14336), (14336, 8192), (2112, 7168))
INT8_M_QUICK: tuple[int, ...] = (1, 1000)
INT8_M_FULL: tuple[int, ...] = (1, 33, 255, 4099)
INT8_COMBOS: tuple[tuple[str, bool], ...] = (("bfloat16", True), ("float16", False), ("bfloat16", False))


@dataclass(frozen=True)
class Int8Run:
    """One int8 scaled-GEMM check on ``route`` (``tile`` for the Triton kernel)."""

    n: int
    k: int
    m: int
    dtype: str
    bias: bool
    route: str
    tile: tuple[int, ...] | None = None
    extreme: bool = False

    def jobs(self) -> list[Any]:
        from sglang_consumer_gpu.measure.int8 import Int8Case, Int8Job

        if self.tile is None or self.extreme:
            return []
        return [Int8Job(Int8Case(self.m, self.n, self.k, self.dtype, self.bias), self.tile),
                Int8Job(Int8Case(self.m, self.n, self.k), self.tile, raw_acc=True)]  # fmt: skip

    def execute(self, runner: Runner, case: Case) -> Result:
        """The GEMM on the route the GPU gets against the float64 reference (random data), or the
        extreme accumulator (all -128) for exact int32 sums."""
        from sglang_consumer_gpu.measure.int8 import as_check, check_case, extreme_case

        if self.extreme:
            row = extreme_case(runner.spec, device=runner.device)
            ok = bool(row["ok"])
            reason = f"int32 accumulator {'==' if ok else '!='} {row['expected']} everywhere"
            return Result(case, PASS if ok else FAIL, reason, detail=row)
        if self.route == "sgl-kernel":
            try:
                import sgl_kernel  # noqa: F401
            except Exception as exc:
                text = str(exc).strip().splitlines()
                why = f"{type(exc).__name__}: {text[-1] if text else ''}"[:400]
                return Result(case, SKIP, f"sgl-kernel does not import here ({why}): the int8 route this "
                              "GPU gets (SGLang's own) cannot run in this Python")  # fmt: skip
            tile = None
        else:
            tile = Tile.from_list(list(self.tile or ()))
        row = check_case(
            self.n, self.k, self.m, self.dtype, self.bias, runner.spec, runner.generator(), runner.device, tile,
            self.route,
        )
        return runner.verdict(case, as_check(row))


def selftest_cases(spec: GpuSpec, request: Request) -> list[Case]:
    """The W8A8-INT8 scaled GEMM on the route this GPU gets (the plugin's Triton kernel where
    sgl-kernel has none, else sgl-kernel's), over model-like (N, K) layers and token counts."""
    from sglang_consumer_gpu.int8.backend import TRITON, int8_backend_for
    from sglang_consumer_gpu.int8.tiles import select_tile

    quick = request.quick
    route, why = int8_backend_for(spec)
    kernel = "int8_scaled_mm"
    if route == TRITON and not spec.is_ampere_or_newer:
        return [Case("int8", "int8 scaled GEMM", kernel, skip=why)]
    out: list[Case] = []
    nks = INT8_NK_QUICK if quick else INT8_NK_FULL
    ms = INT8_M_QUICK if quick else INT8_M_FULL
    i = 0
    for n, k in nks:
        for m in ms:
            dtype, bias = INT8_COMBOS[i % len(INT8_COMBOS)]
            i += 1
            name = f"int8 M={m} N={n} K={k} {dtype}{' +bias' if bias else ''}"
            if route == TRITON:
                tile = select_tile(spec, m, n, k)
                run = Int8Run(n, k, m, dtype, bias, route, tuple(tile.to_list()))
                out.append(
                    Case("int8", name, "int8_scaled_mm_kernel (plugin's Triton)", tile.label(), why, run)
                )
            else:
                out.append(Case("int8", name, "sgl_kernel.int8_scaled_mm", "sgl-kernel CUTLASS", why,
                                Int8Run(n, k, m, dtype, bias, route)))  # fmt: skip
    if route == TRITON:
        out.append(Case("int8", "int8 extreme accumulator (all -128, K=18944)", "int8_scaled_mm_kernel (plugin's Triton)",
                        "dispatch table", why, Int8Run(256, 18944, 64, "int32", False, route, extreme=True)))  # fmt: skip
    return out


@dataclass(frozen=True)
class Int8Family(Family):
    """The int8 scaled GEMM (see the module docstring)."""

    name: str = "int8"
    patch_modules: tuple[Any, ...] = (int8_scaled_mm,)
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        return needed_on(spec)

    def check_providers(self) -> tuple[Provider, ...]:
        return (Int8Provider(),)

    def selftest_cases(self, spec: GpuSpec, request: Request) -> list[Case]:
        return selftest_cases(spec, request)


FAMILY = Int8Family()
