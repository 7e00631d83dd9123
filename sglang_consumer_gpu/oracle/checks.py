"""What ``sglang-consumer-gpu check`` compiles: providers of check items.

A provider is a ``"module:function"`` name whose function takes
``(spec, *, full: bool)`` and yields :class:`CheckItem`. ``PROVIDERS`` are
what a user of the plugin would run (the plugin's choices);
``BASELINE_PROVIDERS`` are what SGLang 0.5.23 chooses on its own (its tuned
files and defaults, no plugin), so ``check --baseline`` shows before/after.
Providers are imported lazily; one whose module does not exist is skipped
with a message (helpers add theirs as they land).

The fused-MoE provider here asks SGLang's own ``try_get_optimal_moe_config``
(under :func:`~.virtual.virtual_gpu`: SGLang's tuned file for that GPU
name if it ships one, else its default) for each batch size of the grid, for
a few common model shapes plus every shape SGLang ships a tuned file for on
that GPU, and compiles both GEMMs with the chosen configs.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.oracle.core import Resources

#: What the plugin would run; each function(spec, *, full) -> Iterable[CheckItem].
PROVIDERS: list[str] = [
    "sglang_consumer_gpu.oracle.checks:moe_items",
    "sglang_consumer_gpu.moe.checks:check_items",
    "sglang_consumer_gpu.oracle.kernels.attention:check_items",
    "sglang_consumer_gpu.int8.checks:check_items",
]
#: What SGLang chooses without the plugin (``check --baseline``).
BASELINE_PROVIDERS: list[str] = [
    "sglang_consumer_gpu.oracle.checks:moe_baseline_items",
    "sglang_consumer_gpu.oracle.checks:attention_baseline_items",
]


@dataclass(frozen=True)
class CheckItem:
    """One compiled configuration and its verdict.

    A provider may also yield a *lazy* item (``resources=None``, ``run`` set):
    :func:`expand` calls ``run()`` (returning Resources or a list of them, one
    per kernel launched) and turns it into finished items; ``area`` left empty
    becomes the provider's module's last name.
    """

    area: str = ""  # "moe", "attention", "moe-baseline", ...
    kernel: str = ""
    config: str = ""  # human-readable: shape, batch, tile
    resources: Resources | None = None
    error: str | None = None
    run: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.resources is not None and self.resources.fits

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "kernel": self.kernel,
            "config": self.config,
            "resources": self.resources.to_dict() if self.resources else None,
            "error": self.error,
            "ok": self.ok,
        }


def expand(item: CheckItem, default_area: str) -> Iterator[CheckItem]:
    """Finished items for ``item`` (runs a lazy one; its errors become FAILs)."""
    area = item.area or default_area
    if item.run is None or item.resources is not None or item.error is not None:
        yield replace(item, area=area, run=None)
        return
    try:
        out = item.run()
    except Exception as exc:
        yield CheckItem(area, item.kernel, item.config, None, _err(exc))
        return
    results = out if isinstance(out, (list, tuple)) else [out]
    if not results:
        yield CheckItem(area, item.kernel, item.config, None, "compiled no kernel")
    for res in results:
        yield CheckItem(area, res.kernel if len(results) > 1 else item.kernel or res.kernel, item.config, res)


def load_provider(name: str) -> Callable[..., Iterable[CheckItem]] | None:
    """The provider function, or None when its module is not installed (yet)."""
    module_name, _, func = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise
    return getattr(module, func)


# --- fused MoE -----------------------------------------------------------------


@dataclass(frozen=True)
class NamedShape:
    """A MoE layer (the MoE module's :class:`MoeShape`, N = intermediate size) and where it comes from."""

    name: str
    shape: MoeShape

    def label(self) -> str:
        return f"{self.name} {self.shape.label}"


def _named(name: str, *args: Any, **kwargs: Any) -> NamedShape:
    return NamedShape(name, MoeShape(*args, **kwargs))


#: Common MoE layers at TP=1 (hidden size K from the models' config.json).
COMMON_SHAPES: tuple[NamedShape, ...] = (
    _named("Qwen3-30B-A3B", 128, 768, 2048, 8),
    _named("Qwen3-30B-A3B-FP8", 128, 768, 2048, 8, "fp8_w8a8", (128, 128)),
    _named("Mixtral-8x7B", 8, 14336, 4096, 2),
)
FULL_EXTRA_SHAPES: tuple[NamedShape, ...] = (
    _named("DeepSeek-V2-Lite", 64, 1408, 2048, 6),
    _named("Qwen3-30B-A3B-int8", 128, 768, 2048, 8, "int8_w8a8", per_channel_quant=True),
    _named("Qwen3-30B-A3B-AWQ", 128, 768, 2048, 8, "int4_w4a16"),
)
#: SGLang's fused-MoE tuning batch sizes (benchmark/kernels/fused_moe_triton).
FULL_GRID: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)
GRID: tuple[int, ...] = (1, 16, 64, 256, 1024, 4096)
#: Hidden size used for shapes known only from a config file name (which has
#: no K): divisible by every BLOCK_SIZE_K and quant group, so even_Ks holds.
FILE_SHAPE_K = 4096

_FILE_RE = re.compile(
    r"^E=(\d+),N=(\d+),device_name=([^,]*?)(?:,dtype=([a-z0-9_]+))?(?:,block_shape=\[(\d+), ?(\d+)\])?"
    r"(,per_channel_quant=True)?\.json$"
)


def sglang_file_shapes(spec: GpuSpec) -> list[NamedShape]:
    """Shapes SGLang ships a tuned (up-projection) config file for, for this GPU name."""
    from sglang.srt.layers.moe.moe_runner.triton_utils import fused_moe_triton_config as cfg

    root = Path(cfg.__file__).parent / "configs"
    seen: dict[tuple[Any, ...], NamedShape] = {}
    for path in sorted(root.glob(f"triton_*/*device_name={spec.config_device_name}*.json")):
        m = _FILE_RE.match(path.name)
        if not m or m.group(3) != spec.config_device_name:
            continue
        E, N, dtype = int(m.group(1)), int(m.group(2)), m.group(4)
        block = (int(m.group(5)), int(m.group(6))) if m.group(5) else None
        topk = 8 if E >= 16 else 2
        named = _named("sglang-file", E, N, FILE_SHAPE_K, topk, dtype, block, bool(m.group(7)))
        seen.setdefault((E, N, dtype, block, bool(m.group(7))), named)
    return list(seen.values())


def _tile(config: dict[str, Any] | None) -> str:
    if not config:
        return "-"
    t = f"{config['BLOCK_SIZE_M']}x{config['BLOCK_SIZE_N']}x{config['BLOCK_SIZE_K']}"
    t += f" g{config.get('GROUP_SIZE_M', '-')} w{config.get('num_warps', 4)} s{config.get('num_stages', 3)}"
    return t


def _moe_choice(shape: MoeShape, M: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(up config, down config or None) as SGLang's fused_experts picks them."""
    from sglang.srt.layers.moe.moe_runner.triton_utils import fused_moe_triton_config as cfg

    block = list(shape.block_shape) if shape.block_shape else None
    config, (down, _max_m) = cfg.try_get_optimal_moe_config(
        (shape.E, 2 * shape.N, shape.K),
        (shape.E, shape.K, shape.N),
        shape.topk,
        shape.dtype,
        M,
        block_shape=block,
        per_channel_quant=shape.per_channel_quant,
        return_down_config=True,
    )
    return dict(config), (dict(down) if down else None)


def _moe_items(spec: GpuSpec, *, full: bool, patched: bool, area: str) -> Iterator[CheckItem]:
    from sglang_consumer_gpu.moe.checks import fp8_unsupported
    from sglang_consumer_gpu.oracle.kernels.moe import moe_gemm_resources
    from sglang_consumer_gpu.oracle.virtual import virtual_gpu

    shapes = [*COMMON_SHAPES, *(FULL_EXTRA_SHAPES if full else ()), *sglang_file_shapes(spec)]
    grid = FULL_GRID if full else GRID
    for named in shapes:
        shape = named.shape
        if fp8_unsupported(spec, shape):
            continue  # no Triton fp8 path to check on this arch (see moe.checks.fp8_unsupported)
        for M in grid:
            try:
                with virtual_gpu(spec, patched=patched):
                    up, down = _moe_choice(shape, M)
            except Exception as exc:
                yield CheckItem(area, "fused_moe_kernel", f"{named.label()} M={M}", None, _err(exc))
                continue
            for gemm, config in (("up", up), ("down", down or up)):
                label = f"{named.label()} M={M} {gemm}: {_tile(config)}"
                try:
                    res = moe_gemm_resources(
                        spec,
                        gemm=gemm,
                        E=shape.E,
                        N=shape.N,
                        K=shape.K,
                        topk=shape.topk,
                        M=M,
                        dtype=shape.dtype,
                        block_shape=list(shape.block_shape) if shape.block_shape else None,
                        config=config,
                        per_channel_quant=shape.per_channel_quant,
                        patched=patched,
                    )
                    yield CheckItem(area, res.kernel, label, res)
                except Exception as exc:
                    yield CheckItem(area, f"fused_moe_kernel:{gemm}", label, None, _err(exc))


def _err(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


def moe_items(spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
    """Fused-MoE configs SGLang picks with the plugin active (its patched lookup/default)."""
    return _moe_items(spec, full=full, patched=True, area="moe")


def moe_baseline_items(spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
    """Fused-MoE configs SGLang 0.5.23 picks on its own for this GPU."""
    return _moe_items(spec, full=full, patched=False, area="moe-baseline")


def attention_baseline_items(spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
    """SGLang's own attention launches (the attention spec's cases, unpatched)."""
    try:
        from sglang_consumer_gpu.oracle.kernels import attention
    except ModuleNotFoundError:
        return
    for case in attention.cases(full=full):
        label = case.label() if callable(case.label) else str(case.label)
        try:
            for res in attention.launch_resources(spec, case, patched=False):
                yield CheckItem("attention-baseline", res.kernel, label, res)
        except Exception as exc:
            yield CheckItem("attention-baseline", case.launcher, label, None, _err(exc))


moe_items.areas = ("moe",)  # type: ignore[attr-defined]
moe_baseline_items.areas = ("moe-baseline",)  # type: ignore[attr-defined]
attention_baseline_items.areas = ("attention-baseline",)  # type: ignore[attr-defined]
