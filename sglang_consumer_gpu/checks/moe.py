"""The fused-MoE ``check`` provider: every config SGLang's fused MoE gets on a GPU.

One shape list (:data:`SHAPES`, plus :data:`FULL_SHAPES` with ``--full``) and
one batch grid (:data:`GRID`, or :data:`FULL_GRID`), three sources of configs:

* picks: for each shape, each shape SGLang ships a tuned file for on this
  GPU, and each batch size, the up and down configs SGLang's own
  ``try_get_optimal_moe_config`` returns under a virtual GPU -- with the
  plugin active (area ``moe``), what a user's server runs; without it
  (``moe-baseline``), SGLang's own choice;
* files: every entry of every bundled or SGLang config file named for this
  GPU that the plugin's lookup accepts;
* heuristic: the plugin's heuristic tile for each shape and batch size.

Each item compiles one GEMM (``up``: w13, ``down``: w2) through SGLang's own
launcher (:mod:`sglang_consumer_gpu.oracle.kernels.moe`); when that dry run
raises, the item FAILs with the reason. Files and heuristic add only tiles not
listed yet, unless ``--full``: shared memory follows the dtype, quantization,
GEMM, tile and whether the reduction divides by BLOCK_SIZE_K, not E or M. On a
GPU without fp8 e4m3 each fp8_w8a8 shape is one SKIP row that says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.checks.item import CheckItem, error_text
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.lookup import HEURISTIC_DTYPES, find_configs
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import BUNDLED_DIR, ConfigKey, sglang_config_root
from sglang_consumer_gpu.moe.validate import tile_label
from sglang_consumer_gpu.oracle.kernels.moe import GEMMS, moe_gemm_resources, shape_args
from sglang_consumer_gpu.oracle.virtual import virtual_gpu


@dataclass(frozen=True)
class NamedShape:
    """A MoE layer (N = intermediate size per GPU) and the model it comes from."""

    name: str
    shape: MoeShape

    def label(self) -> str:
        return f"{self.name} {self.shape.label}"


def _named(name: str, *args: Any, **kwargs: Any) -> NamedShape:
    return NamedShape(name, MoeShape(*args, **kwargs))


#: Layers people run on 24-96 GB GPUs (hidden size K from the models' config.json).
SHAPES: tuple[NamedShape, ...] = (
    _named("Qwen3-30B-A3B", 128, 768, 2048, 8),
    _named("Qwen3-30B-A3B-FP8", 128, 768, 2048, 8, "fp8_w8a8", (128, 128)),
    _named("Qwen3-30B-A3B fp8 per-tensor", 128, 768, 2048, 8, "fp8_w8a8"),
    _named("DeepSeek-V2-Lite", 64, 1408, 2048, 6),
    _named("Mixtral-8x7B", 8, 14336, 4096, 2),
    _named("Mixtral-8x7B TP2", 8, 7168, 4096, 2),
    _named("Mixtral-8x7B TP2 fp8", 8, 7168, 4096, 2, "fp8_w8a8"),
)
FULL_SHAPES: tuple[NamedShape, ...] = (
    _named("Qwen3-30B-A3B-int8", 128, 768, 2048, 8, "int8_w8a8", per_channel_quant=True),
    _named("Qwen3-30B-A3B-AWQ", 128, 768, 2048, 8, "int4_w4a16"),
    _named("Qwen3-235B-A22B-FP8 TP2", 128, 1536, 4096, 8, "fp8_w8a8", (128, 128)),
    _named("Qwen3-Next-80B-A3B", 512, 512, 2048, 10),
    _named("GLM-4.5-Air TP2 fp8", 128, 704, 4096, 8, "fp8_w8a8"),
    _named("gpt-oss-20b", 32, 2880, 2880, 4),
    _named("DeepSeek-R1 channel-INT8 TP32", 256, 64, 7168, 8, "int8_w8a8", per_channel_quant=True),
)
#: SGLang's fused-MoE tuning batch sizes (benchmark/kernels/fused_moe_triton).
FULL_GRID: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)
GRID: tuple[int, ...] = (1, 16, 64, 256, 1024, 4096)
#: Hidden size for shapes known only from a config file name (which has no K):
#: divisible by every BLOCK_SIZE_K and quant group, so even_Ks holds.
FILE_K = 4096

#: SGLang's config file names (``get_config_file_name``), ``_down`` for the w2 GEMM's own file.
FILE_RE = re.compile(
    r"^E=(\d+),N=(\d+),device_name=([^,]+?)(?:,dtype=([a-z0-9_]+))?(?:,block_shape=\[(\d+), ?(\d+)\])?"
    r"(,per_channel_quant=True)?(_down)?\.json$"
)


def file_keys(spec: GpuSpec, roots: Iterable[Path]) -> list[ConfigKey]:
    """Keys of the config files in ``roots`` named for ``spec``, in order, once each."""
    keys: dict[ConfigKey, None] = {}
    for root in roots:
        for path in sorted(root.glob(f"*device_name={spec.config_device_name}*.json")):
            m = FILE_RE.match(path.name)
            if not m or m.group(3) != spec.config_device_name:
                continue
            bn, bk = int(m.group(5) or 0), int(m.group(6) or 0)
            key = ConfigKey(
                int(m.group(1)), int(m.group(2)), m.group(4), bn, bk, bool(m.group(7)), bool(m.group(8))
            )
            keys[key] = None
    return list(keys)


def _sglang_roots() -> list[Path]:
    root = sglang_config_root()
    return sorted(p for p in root.iterdir() if p.is_dir()) if root is not None else []


def file_shape(key: ConfigKey) -> MoeShape:
    """The layer a config file is for, with :data:`FILE_K` as hidden size and top-8 (top-2 below 16 experts)."""
    topk = 8 if key.E >= 16 else 2
    return MoeShape(key.E, key.N, FILE_K, topk, key.dtype, key.block_shape, key.per_channel_quant)


def sglang_file_shapes(spec: GpuSpec) -> list[NamedShape]:
    """Layers SGLang ships a tuned (up-projection) config file for, for this GPU name."""
    return [
        NamedShape("sglang-file", file_shape(k)) for k in file_keys(spec, _sglang_roots()) if not k.down_moe
    ]


def unsupported(spec: GpuSpec, shape: MoeShape) -> str | None:
    """Why ``spec`` cannot run this layer with any config, or None."""
    if shape.dtype == "fp8_w8a8" and not spec.supports_fp8_e4m3:
        return (
            f"{spec.arch_name} has no fp8 e4m3: SGLang's fp8 fused-MoE Triton kernel does not compile here "
            "('type fp8e4nv not supported in this architecture') whatever the config, with or without the "
            "plugin; use a bf16, int8 or AWQ checkpoint"
        )
    return None


def sglang_choice(shape: MoeShape, M: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(up config, down config or None) as SGLang's ``fused_experts`` picks them
    (call under :func:`~sglang_consumer_gpu.oracle.virtual.virtual_gpu`)."""
    from sglang.srt.layers.moe.moe_runner.triton_utils import fused_moe_triton_config as cfg

    config, (down, _max_m) = cfg.try_get_optimal_moe_config(
        (shape.E, 2 * shape.N, shape.K),
        (shape.E, shape.K, shape.N),
        shape.topk,
        shape.dtype,
        M,
        block_shape=list(shape.block_shape) if shape.block_shape else None,
        per_channel_quant=shape.per_channel_quant,
        return_down_config=True,
    )
    return dict(config), (dict(down) if down else None)


def gemm_item(
    spec: GpuSpec, origin: str, shape: MoeShape, M: int, gemm: str, config: dict[str, Any], *, patched: bool
) -> CheckItem:
    """A pending item: ``config`` for one GEMM of ``shape``, compiled through SGLang's launcher."""
    return CheckItem(
        kernel=f"fused_moe_kernel:{gemm}",
        config=f"{origin} M={M} {gemm}: {tile_label(config)}",
        run=lambda: moe_gemm_resources(
            spec, gemm=gemm, M=M, config=config, patched=patched, **shape_args(shape)
        ),
    )


@dataclass
class _Listed:
    """Tiles already listed; with ``keep_all`` every one counts as new."""

    keep_all: bool
    keys: set[tuple[Any, ...]] = field(default_factory=set)

    def first(self, shape: MoeShape, gemm: str, config: dict[str, Any]) -> bool:
        reduction = shape.K if gemm == "up" else shape.N
        key = (
            shape.dtype,
            shape.block_shape,
            shape.per_channel_quant,
            gemm,
            reduction % int(config["BLOCK_SIZE_K"]) == 0,
            tuple(sorted(config.items())),
        )
        new = key not in self.keys
        self.keys.add(key)
        return new or self.keep_all


@dataclass(frozen=True)
class MoeProvider:
    """Fused MoE: the plugin's configs (``baseline=False``) or SGLang's own."""

    area: str
    baseline: bool

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        listed = _Listed(keep_all=full)
        shapes = [*SHAPES, *(FULL_SHAPES if full else ())]
        grid = FULL_GRID if full else GRID
        yield from self._picks(spec, [*shapes, *sglang_file_shapes(spec)], grid, listed)
        if not self.baseline:
            yield from self._files(spec, listed)
            yield from self._heuristic(spec, shapes, grid, listed)

    def _picks(
        self, spec: GpuSpec, shapes: list[NamedShape], grid: tuple[int, ...], listed: _Listed
    ) -> Iterator[CheckItem]:
        runnable = []
        for named in shapes:
            reason = unsupported(spec, named.shape)
            if reason:
                yield CheckItem(kernel="fused_moe_kernel", config=named.label(), skip=reason)
            else:
                runnable.append(named)
        picks: list[tuple[NamedShape, int, Any]] = []
        with virtual_gpu(spec, patched=not self.baseline):
            for named in runnable:
                for M in grid:
                    try:
                        picks.append((named, M, sglang_choice(named.shape, M)))
                    except Exception as exc:
                        picks.append((named, M, exc))
        for named, M, pick in picks:
            if isinstance(pick, Exception):
                yield CheckItem(
                    kernel="fused_moe_kernel", config=f"{named.label()} M={M}", error=error_text(pick)
                )
                continue
            up, down = pick
            for gemm, config in (("up", up), ("down", down or up)):
                listed.first(named.shape, gemm, config)
                yield gemm_item(spec, named.label(), named.shape, M, gemm, config, patched=not self.baseline)

    def _files(self, spec: GpuSpec, listed: _Listed) -> Iterator[CheckItem]:
        for key in file_keys(spec, [BUNDLED_DIR, *_sglang_roots()]):
            found = find_configs(key, spec)
            if not found.configs:
                continue
            shape = file_shape(key)
            origin = f"{found.source} file {shape.label}"
            reason = unsupported(spec, shape)
            if reason:
                yield CheckItem(kernel="fused_moe_kernel", config=origin, skip=reason)
                continue
            for M, config in found.configs.items():
                for gemm in ("down",) if key.down_moe else GEMMS:
                    if listed.first(shape, gemm, config):
                        yield gemm_item(spec, origin, shape, M, gemm, config, patched=True)

    def _heuristic(
        self, spec: GpuSpec, shapes: list[NamedShape], grid: tuple[int, ...], listed: _Listed
    ) -> Iterator[CheckItem]:
        for named in shapes:
            shape = named.shape
            if shape.dtype not in HEURISTIC_DTYPES or unsupported(spec, shape):
                continue  # the lookup keeps SGLang's default there / already a SKIP row
            for M in grid:
                config = heuristic_config(M, shape, spec)
                for gemm in GEMMS:
                    if listed.first(shape, gemm, config):
                        yield gemm_item(
                            spec, f"heuristic {shape.label}", shape, M, gemm, config, patched=True
                        )


MOE = MoeProvider("moe", baseline=False)
MOE_BASELINE = MoeProvider("moe-baseline", baseline=True)
