"""Fused MoE: what SGLang's ``fused_moe_kernel`` runs for a layer and batch, with the plugin and without.

The one answer to "what runs for this MoE shape":

- :func:`plugin_choice`: what SGLang runs with the plugin active on the GPU -- the patched
  lookup (:func:`~sglang_consumer_gpu.moe.lookup.choose`: user / ``$SGLANG_MOE_CONFIG_DIR`` /
  bundled / SGLang file, else the heuristic) for the up GEMM, and the ``_down`` file's nearest
  entry for the down GEMM with the up config's BLOCK_SIZE_M (SGLang's own rule in
  ``try_get_optimal_moe_config``: both GEMMs share one routing sort). Where the plugin does not
  act (not a ~99 KB GPU) it is SGLang's own choice;
- :func:`sglang_choice`: SGLang's own ``try_get_optimal_moe_config`` answering on a virtual GPU,
  the plugin's patches reverted (or, ``patched``, applied: what the server really gets, to check
  the pure answer against).

Every SGLang path of the family is a seam of :mod:`sglang_consumer_gpu.patches.moe_config`.
The ``check`` areas ``moe`` / ``moe-baseline`` (:class:`MoeProvider`): one shape list
(:data:`SHAPES`, plus :data:`FULL_SHAPES` with ``--full``) and one batch grid (:data:`GRID`, or
:data:`FULL_GRID`), three sources of configs:

* picks: for each shape, each shape SGLang ships a tuned file for on this GPU, and each batch
  size, the up and down configs :func:`sglang_choice` returns -- with the plugin active
  (``moe``), what a user's server runs; without it (``moe-baseline``), SGLang's own;
* files: every entry of every bundled or SGLang config file named for this GPU that the
  plugin's lookup accepts;
* heuristic: the plugin's heuristic tile for each shape and batch size.

Each item compiles one GEMM (``up``: w13, ``down``: w2) through SGLang's own launcher
(:mod:`sglang_consumer_gpu.oracle.kernels.moe`); when that dry run raises, the item FAILs with
the reason. Files and heuristic add only tiles not listed yet, unless ``--full``: shared memory
follows the dtype, quantization, GEMM, tile and whether the reduction divides by BLOCK_SIZE_K,
not E or M. fp8_w8a8 layers on sm_80-sm_88 (no e4m3, so SGLang's kernel cannot compile them) are
the fp8 family's (:mod:`.fp8`: the plugin's weight-only kernel runs them): this family leaves them
out of its check areas, selftest and ``doctor --model`` rows there; below sm_80 each fp8_w8a8 shape
is one SKIP row that says why.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.families.base import (
    Family,
    Fit,
    KernelRow,
    Provider,
    error_fit,
    on_gpu,
    quiet_sglang,
)
from sglang_consumer_gpu.families.bench_points import BenchPart, free, oor_bytes, record, row_error, status
from sglang_consumer_gpu.families.cases import FAIL, Case, Request, Result, Runner
from sglang_consumer_gpu.fp8.route import weight_only_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.moe import MoeCase, MoeJob, launch_config
from sglang_consumer_gpu.measure.moe import config_key as config_name
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.lookup import HEURISTIC_DTYPES, choose, find_configs, nearest
from sglang_consumer_gpu.moe.shape import STANDARD_BATCH_GRID, MoeShape, dtype_label
from sglang_consumer_gpu.moe.smem import estimate_shared
from sglang_consumer_gpu.moe.sources import SOURCES, ConfigKey, config_file_name, directories
from sglang_consumer_gpu.moe.validate import pair_label, tile_label
from sglang_consumer_gpu.oracle import answers
from sglang_consumer_gpu.oracle.item import CheckItem, error_text
from sglang_consumer_gpu.oracle.kernels.moe import GEMMS, moe_gemm_resources, moe_resources_both, shape_args
from sglang_consumer_gpu.patches import moe_config

Configs = tuple[dict[str, Any], dict[str, Any] | None]  # (up, down or None: the up config)

#: The reference layer every dtype is checked and tested on: Qwen3-30B-A3B (E 128, N 768, K 2048, top-8).
REFERENCE = MoeShape(128, 768, 2048, 8)
REFERENCE_NAME = "Qwen3-30B-A3B"


@dataclass(frozen=True)
class NamedShape:
    """A MoE layer (N = intermediate size per GPU) and the model it comes from."""

    name: str
    shape: MoeShape

    def label(self) -> str:
        return f"{self.name} {self.shape.label}"


def _named(name: str, *args: Any, **kwargs: Any) -> NamedShape:
    return NamedShape(name, MoeShape(*args, **kwargs))


def _reference(name: str, **changes: Any) -> NamedShape:
    return NamedShape(name, dataclasses.replace(REFERENCE, **changes))


#: Layers people run on 24-96 GB GPUs (hidden size K from the models' config.json).
SHAPES: tuple[NamedShape, ...] = (
    _reference(REFERENCE_NAME),
    _reference(f"{REFERENCE_NAME}-FP8", dtype="fp8_w8a8", block_shape=(128, 128)),
    _reference(f"{REFERENCE_NAME} fp8 per-tensor", dtype="fp8_w8a8"),
    _named("DeepSeek-V2-Lite", 64, 1408, 2048, 6),
    _named("Mixtral-8x7B", 8, 14336, 4096, 2),
    _named("Mixtral-8x7B TP2", 8, 7168, 4096, 2),
    _named("Mixtral-8x7B TP2 fp8", 8, 7168, 4096, 2, "fp8_w8a8"),
)
FULL_SHAPES: tuple[NamedShape, ...] = (
    _reference(f"{REFERENCE_NAME}-int8", dtype="int8_w8a8", per_channel_quant=True),
    _reference(f"{REFERENCE_NAME}-AWQ", dtype="int4_w4a16"),
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


# ------------------------------------------------------------------------------ the one answer


def active(spec: GpuSpec) -> bool:
    """Do the plugin's fused-MoE config patches act on ``spec``?"""
    return all(p.needed_on(spec) for p in moe_config.PATCHES)


def as_sglang_asks(shape: MoeShape) -> MoeShape:
    """``shape`` as SGLang asks for its config: int8_w8a8 without blocks is per-channel
    (SGLang's w8a8_int8 MoE method passes ``per_channel_quant=True``; its launcher asserts it)."""
    if shape.dtype == "int8_w8a8" and not shape.block_shape and not shape.per_channel_quant:
        return dataclasses.replace(shape, per_channel_quant=True)
    return shape


def config_key(shape: MoeShape, *, down: bool = False) -> ConfigKey:
    """What SGLang asks ``get_moe_configs`` for this layer (``down``: the w2 GEMM's own file)."""
    bn, bk = shape.block_shape or (0, 0)
    return ConfigKey(shape.E, shape.N, shape.dtype, bn, bk, shape.per_channel_quant, down)


def file_names(spec: GpuSpec, shape: MoeShape) -> tuple[str, str]:
    """The config file names SGLang looks for on ``spec``: (up, down)."""
    name = spec.config_device_name
    return config_file_name(config_key(shape), name), config_file_name(config_key(shape, down=True), name)


@dataclass(frozen=True)
class MoeChoice:
    """The fused-MoE configs one batch size runs with: up GEMM, down GEMM (None: the up
    config), and where they came from (``user``, ``bundled``, ``sglang``, ``heuristic`` ...)."""

    up: dict[str, Any]
    down: dict[str, Any] | None
    source: str
    path: str | None = None
    down_path: str | None = None
    file_batch: int | None = None  # the batch size of the file entry used
    asked_for: str | None = None  # a name variant's file: the name SGLang asked for ...
    because: str | None = None  # ... and why the variant's tiles serve it


def plugin_choice(spec: GpuSpec, shape: MoeShape, M: int) -> MoeChoice:
    """What SGLang runs for ``M`` tokens on ``spec`` with the plugin installed (see the module
    docstring; where the plugin does not act, :func:`sglang_choice`'s answer)."""
    if not active(spec):
        up, down = sglang_choice(spec, shape, M)
        return MoeChoice(up, down, "sglang: plugin inactive here")
    c = choose(M, shape, spec)
    down = None
    found = find_configs(config_key(shape, down=True), spec)
    if found.configs:
        down = dict(found.configs[nearest(found.configs, M)])
        down["BLOCK_SIZE_M"] = c.config["BLOCK_SIZE_M"]
    return MoeChoice(
        dict(c.config), down, c.source, c.path, found.path if down else None, c.file_batch, c.asked_for, c.because
    )


def _asked(shape: MoeShape, M: int) -> Configs:
    """SGLang's ``try_get_optimal_moe_config`` for ``shape`` at ``M``, in this process as it is."""
    seam = moe_config.OPTIMAL_CONFIG
    optimal = getattr(importlib.import_module(seam.module), seam.attr)
    config, (down, _max_m) = optimal(
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


def sglang_choice(spec: GpuSpec, shape: MoeShape, M: int, *, patched: bool = False) -> Configs:
    """(up, down or None) as SGLang's ``fused_experts`` picks them on ``spec``: SGLang alone,
    or with the plugin's patches (``patched``). Cheap inside :func:`~.base.on_gpu` for the same
    GPU and patch state."""
    with quiet_sglang(), on_gpu(spec, patched=patched):
        return _asked(shape, M)


def sglang_choices(spec: GpuSpec, shape: MoeShape, ms: Iterable[int], *, patched: bool = False) -> dict[int, Configs]:
    """:func:`sglang_choice` for several batch sizes at once."""
    with quiet_sglang(), on_gpu(spec, patched=patched):
        return {M: _asked(shape, M) for M in ms}


def sglang_choices_remembered(spec: GpuSpec, shape: MoeShape, ms: Iterable[int]) -> dict[int, Configs]:
    """:func:`sglang_choices` of SGLang alone, from the answer cache when asked before
    (:mod:`~sglang_consumer_gpu.oracle.answers`: ``doctor --model`` then skips importing SGLang's
    fused-MoE modules). SGLang alone reads its bundled files (its version is in the key) and
    ``SGLANG_MOE_CONFIG_DIR`` (whose files are)."""
    ms = sorted(set(ms))
    k = answers.key("moe-sglang-choices", spec=spec.to_dict(), shape=repr(shape), ms=ms,
                    user_dir=answers.files_of(os.environ.get("SGLANG_MOE_CONFIG_DIR"), "**/*.json"))  # fmt: skip
    hit = answers.get(k, lambda v: isinstance(v, dict) and set(v) == set(ms))
    if hit is None:
        hit = sglang_choices(spec, shape, ms)
        answers.put(k, hit)
    return hit


def sglang_default(spec: GpuSpec, shape: MoeShape, M: int) -> dict[str, Any]:
    """SGLang's own ``get_default_config`` on ``spec`` (the plugin's patches reverted): what
    SGLang runs where no tuned file exists -- the baseline ``tune-moe`` and the benchmark rounds
    measure against."""
    seam = moe_config.DEFAULT_CONFIG_SEAMS[-1]
    module = importlib.import_module(seam.module)
    block = list(shape.block_shape) if shape.block_shape else None
    with on_gpu(spec, patched=False):  # read the function inside: outside it may be the plugin's
        default = getattr(module, seam.attr)
        return dict(default(M, shape.E, shape.N, shape.K, shape.topk, shape.dtype, False, block))


def variant_note(spec: GpuSpec, shape: MoeShape) -> str | None:
    """When the plugin answers SGLang's file name with a name variant's file: which, and why."""
    if not active(spec):
        return None
    found = find_configs(config_key(shape), spec)
    if not found.asked_for or not found.path:
        return None
    return f"asked for {found.asked_for}, using {found.source} file {Path(found.path).name} because {found.because}"


def variant_files(spec: GpuSpec) -> list[str]:
    """Bundled files for ``spec`` that the plugin uses under another name SGLang asks for, each
    "asked for X, using Y because Z" (``doctor``)."""
    from sglang_consumer_gpu.moe.sources import BUNDLED_DIR, parse_file_name, served_by

    out = []
    for path in sorted(BUNDLED_DIR.glob("E=*.json")):
        parsed = parse_file_name(path.name)
        if parsed is None or parsed[1] != spec.config_device_name:
            continue
        for asked in served_by(parsed[0]):
            found = find_configs(asked, spec)
            if found.asked_for and found.path == str(path):
                out.append(f"asked for {found.asked_for}, using bundled file {path.name} because {found.because}")
    return out


def sweep_points(spec: GpuSpec, shape: MoeShape, grid: Iterable[int]) -> list[dict[str, Any]]:
    """Per batch size, the configs a benchmark sweep names (:data:`~.measure.moe_sweep.NAMED`):
    SGLang's own default and the plugin's heuristic on ``spec``."""
    return [{"M": M, "default": sglang_default(spec, shape, M), "heuristic": heuristic_config(M, shape, spec)}
            for M in grid]  # fmt: skip


def unsupported(spec: GpuSpec, shape: MoeShape) -> str | None:
    """Why SGLang's kernel cannot run this layer on ``spec`` with any config, or None."""
    if shape.dtype == "fp8_w8a8" and not spec.supports_fp8_e4m3:
        instead = (
            "the plugin runs fp8 experts through its weight-only FP8 kernel instead (area fp8-moe)"
            if weight_only_gpu(spec)
            else "use a bf16, int8 or AWQ checkpoint"
        )
        return (
            f"{spec.arch_name} has no fp8 e4m3: SGLang's fp8 fused-MoE Triton kernel does not compile here "
            f"('type fp8e4nv not supported in this architecture') whatever the config; {instead}"
        )
    return None


def handed_over(spec: GpuSpec, shape: MoeShape) -> bool:
    """Is this layer the fp8 family's on ``spec`` (fp8 weights on a GPU without e4m3, sm_80-sm_88)?"""
    return shape.dtype == "fp8_w8a8" and weight_only_gpu(spec)


# ------------------------------------------------------------------------------ config files


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


def file_shape(key: ConfigKey) -> MoeShape:
    """The layer a config file is for, with :data:`FILE_K` as hidden size and top-8 (top-2 below 16 experts)."""
    topk = 8 if key.E >= 16 else 2
    return MoeShape(key.E, key.N, FILE_K, topk, key.dtype, key.block_shape, key.per_channel_quant)


def sglang_file_shapes(spec: GpuSpec) -> list[NamedShape]:
    """Layers SGLang ships a tuned (up-projection) config file for, for this GPU name."""
    return [
        NamedShape("sglang-file", file_shape(k))
        for k in file_keys(spec, directories(("sglang",)))
        if not k.down_moe
    ]


# ------------------------------------------------------------------------------ check


def gemm_item(spec: GpuSpec, origin: str, shape: MoeShape, M: int, gemm: str, config: dict[str, Any]) -> CheckItem:
    """A pending item: ``config`` for one GEMM of ``shape``, compiled through SGLang's launcher."""
    return CheckItem(
        kernel=f"fused_moe_kernel:{gemm}",
        config=f"{origin} M={M} {gemm}: {tile_label(config)}",
        run=lambda: moe_gemm_resources(spec, gemm=gemm, M=M, config=config, **shape_args(shape)),
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


def pick_items(
    spec: GpuSpec,
    shapes: Iterable[NamedShape],
    grid: Iterable[int],
    listed: _Listed,
    *,
    patched: bool,
    origin: str = "",
    only_new: bool = False,
) -> Iterator[CheckItem]:
    """For each shape and batch size, the up and down configs SGLang's ``try_get_optimal_moe_config``
    answers on ``spec`` (with the plugin's patches, or SGLang alone), as pending items (``only_new``:
    only tiles ``listed`` has not seen); a lookup that raises is one FAIL item."""
    picks: list[tuple[NamedShape, int, Any]] = []
    with on_gpu(spec, patched=patched):  # SGLang's own answer as on the GPU: sglang_choice
        for named in shapes:
            for M in grid:
                try:
                    picks.append((named, M, _asked(named.shape, M)))
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
            if listed.first(named.shape, gemm, config) or not only_new:
                yield gemm_item(spec, f"{origin}{named.label()}", named.shape, M, gemm, config)


@dataclass(frozen=True)
class MoeProvider:
    """Fused MoE: the plugin's configs (``baseline=False``) or SGLang's own."""

    area: str
    baseline: bool
    drives_sglang: bool = True

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
            if handed_over(spec, named.shape):
                continue
            reason = unsupported(spec, named.shape)
            if reason:
                yield CheckItem(kernel="fused_moe_kernel", config=named.label(), skip=reason)
            else:
                runnable.append(named)
        yield from pick_items(spec, runnable, grid, listed, patched=not self.baseline)

    def _files(self, spec: GpuSpec, listed: _Listed) -> Iterator[CheckItem]:
        for key in file_keys(spec, directories(("bundled", "sglang"))):
            found = find_configs(key, spec)
            if not found.configs:
                continue
            shape = file_shape(key)
            if handed_over(spec, shape):
                continue
            origin = f"{found.source} file {shape.label}"
            reason = unsupported(spec, shape)
            if reason:
                yield CheckItem(kernel="fused_moe_kernel", config=origin, skip=reason)
                continue
            for M, config in found.configs.items():
                for gemm in ("down",) if key.down_moe else GEMMS:
                    if listed.first(shape, gemm, config):
                        yield gemm_item(spec, origin, shape, M, gemm, config)

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
                        yield gemm_item(spec, f"heuristic {shape.label}", shape, M, gemm, config)


# ------------------------------------------------------------------------------ selftest


#: (name, dtype, block_shape, per_channel, activation dtype, in quick mode).
MOE_MODES: tuple[tuple[str, str | None, tuple[int, int] | None, bool, str, bool], ...] = (
    ("bf16", None, None, False, "bfloat16", True),
    ("fp16", None, None, False, "float16", True),
    ("fp8 block", "fp8_w8a8", (128, 128), False, "bfloat16", True),
    ("fp8 per-tensor", "fp8_w8a8", None, False, "bfloat16", True),
    ("fp8 per-channel", "fp8_w8a8", None, True, "bfloat16", False),
    ("int8 per-channel", "int8_w8a8", None, True, "bfloat16", True),
    ("int8 block", "int8_w8a8", (128, 128), False, "bfloat16", False),
)
#: Batch sizes: decode (1: 8 routed tokens, not a multiple of 16) to prefill chunks; the heuristic's four regimes.
QUICK_M: tuple[int, ...] = (1, 1024)
FULL_M: tuple[int, ...] = (1, 64, 256, 1024, 4096)
#: Further 16-bit layers in full mode (name, E, N, K, topk).
FULL_LAYERS: tuple[tuple[str, int, int, int, int], ...] = (
    ("DeepSeek-V2-Lite", 64, 1408, 2048, 6),
    ("Mixtral-8x7B TP2", 8, 7168, 4096, 2),
)
FULL_LAYER_M: tuple[int, ...] = (1, 256, 4096)
#: File entries per config source in quick mode (full: all, or ``max_per_source``).
QUICK_PER_SOURCE = 2


@dataclass(frozen=True)
class MoeRun:
    """Both GEMMs of ``case`` with ``up``/``down`` (None: ``up``); ``guarded``: the config does
    not fit the GPU and must complete through the safety net."""

    case: MoeCase
    up: dict[str, Any]
    down: dict[str, Any] | None = None
    guarded: bool = False

    def jobs(self) -> list[Any]:
        from sglang_consumer_gpu.measure.moe import MoeJob

        if not self.guarded:
            return [MoeJob.of(self.case, self.up, self.down)]
        # The safety net's first variants (fewer stages), compiled ahead like any other
        # config: the guard then finds them in Triton's cache.
        stages = int(self.up.get("num_stages", 3))
        return [MoeJob.of(self.case, dict(self.up, num_stages=s)) for s in range(stages, 0, -1)]

    def execute(self, runner: Runner, case: Case) -> Result:
        """Both GEMMs through SGLang's launcher on poisoned outputs against the float32 reference;
        a case whose config SGLang's patched lookup does not return FAILs (the server would not
        run it); a guarded one passes only through the safety net."""
        from sglang_consumer_gpu.measure.moe import MoeJob, MoeLayer

        lookup = runner.lookup.get(case.name, "not checked")
        if lookup.startswith("differs"):
            return Result(
                case, FAIL, f"the server would not run this config: {lookup}", detail={"lookup": lookup}
            )
        if self.guarded and runner.safety.get("safety-net") != "applied":
            return Result(case, FAIL, f"the safety net is not installed: {runner.safety or 'no status'}")
        check = MoeLayer(self.case, slots=1, device=runner.device).check(self.up, self.down)
        key = MoeJob.of(self.case, self.up, self.down).key
        result = runner.verdict(case, check, lookup=lookup, compile=runner.compiled.get(key, "not compiled"))
        return runner.guard_verdict(result, "fused_moe_kernel") if self.guarded else result


def selftest_cases(spec: GpuSpec, request: Request) -> list[Case]:
    """The fused-MoE cases: the reference layer in every dtype the GPU runs at the batch sizes of
    the mode (mostly the heuristic on consumer GPUs), the entries of every config file the lookup
    takes for this GPU, and the model's own layer -- each with the configs :func:`plugin_choice` gives."""
    problem, quick = request.problem, request.quick
    kernel = "fused_moe_kernel"
    if problem:
        return [Case("moe", "fused MoE", kernel, skip=problem)]
    if not active(spec):
        return [Case("moe", "fused MoE", kernel, skip=(
            f"the plugin leaves fused-MoE configs to SGLang on {spec.name} "
            f"({spec.smem_per_block_optin:,} B shared memory per block, not a ~99 KB GPU)"))]  # fmt: skip
    layers: list[tuple[str, MoeShape, str, tuple[int, ...]]] = []
    ms = QUICK_M if quick else FULL_M
    for mode, dtype, block, per_channel, act, in_quick in MOE_MODES:
        if quick and not in_quick:
            continue
        layers.append((mode, dataclasses.replace(REFERENCE, dtype=dtype, block_shape=block, per_channel_quant=per_channel), act, ms))
    if not quick:
        layers += [
            (name, MoeShape(E, N, K, topk), "bfloat16", FULL_LAYER_M) for name, E, N, K, topk in FULL_LAYERS
        ]
    layers += [(name, shape, act, ms) for name, shape, act in request.model_shapes]

    cases: list[Case] = []
    seen: set[tuple[Any, ...]] = set()
    unsupported_dtypes: set[str] = set()
    for name, shape, act, layer_ms in layers:
        if handed_over(spec, shape):
            continue
        why = unsupported(spec, shape) or _engine_problem(shape)
        if why:
            if shape.dtype not in unsupported_dtypes:  # one row per dtype
                unsupported_dtypes.add(str(shape.dtype))
                what = f"every {dtype_label(shape.dtype)} mode" if shape.dtype else name
                cases.append(Case("moe", f"fused MoE {what}", kernel, skip=why))
            continue
        for M in layer_ms:
            pick = plugin_choice(spec, shape, M)
            case = MoeCase(shape, M, act)
            seen.add(_moe_identity(case, pick.up, pick.down))
            source = f"{pick.source} file {Path(pick.path).name}" if pick.path else pick.source
            cases.append(Case("moe", _moe_name(name, case), kernel, pair_label(pick.up, pick.down),
                              source, MoeRun(case, launch_config(pick.up),
                                                  launch_config(pick.down) if pick.down else None)))  # fmt: skip
    cases += _file_cases(spec, quick, request.max_per_source, seen, request.left_out)
    return cases


def _moe_name(prefix: str, case: MoeCase) -> str:
    s = case.shape
    quant = f" {case.quant}" if case.quant not in ("none", "per-tensor") and case.quant not in prefix else ""
    return f"{prefix}{quant} E={s.E} N={s.N} K={s.K} top{s.topk} M={case.M}"


def _engine_problem(shape: MoeShape) -> str | None:
    if shape.dtype not in (None, "fp8_w8a8", "int8_w8a8"):
        return (
            f"{shape.dtype} experts run SGLang's fused_moe_kernel_gptq_awq, which the plugin does not "
            "configure (it keeps SGLang's default there): nothing of the plugin's to test"
        )
    return None


def _moe_identity(case: MoeCase, up: dict[str, Any], down: dict[str, Any] | None) -> tuple[Any, ...]:
    """What a fused-MoE correctness case exercises beyond its shape: dtype, quantization,
    activation dtype and both configs."""
    s = case.shape
    return (
        s.dtype,
        case.quant,
        s.block_shape,
        case.act_dtype,
        config_name(up),
        config_name(down) if down else None,
    )




def _file_cases(
    spec: GpuSpec,
    quick: bool,
    max_per_source: int | None,
    seen: set[tuple[Any, ...]],
    left_out: dict[str, int],
) -> list[Case]:
    """Entries of the config files the lookup takes for this GPU (see the module docstring)."""
    from sglang_consumer_gpu.moe.lookup import find_configs
    limit = QUICK_PER_SOURCE if quick else max_per_source
    ups: dict[Any, None] = {}
    for key in file_keys(spec, directories()):
        ups[config_key(file_shape(key))] = None
    per_source: dict[str, list[Case]] = {}
    for key in ups:
        shape = file_shape(key)
        up, down = find_configs(key, spec), find_configs(config_key(shape, down=True), spec)
        entries = up.configs or down.configs
        if not entries or unsupported(spec, shape) or _engine_problem(shape):
            continue  # every file rejected: the heuristic answers (the grid above tests it)
        source = up.source if up.configs else down.source
        picks = [(M, plugin_choice(spec, shape, M)) for M in sorted(entries)]
        if quick:  # the entry that needs the most shared memory: the one nearest the limit
            picks = [
                max(
                    picks,
                    key=lambda p: estimate_shared(p[1].up, shape.dtype, shape.block_shape, spec.capability),
                )
            ]
        path = up.path or down.path
        origin = f"{source} file {Path(path).name if path else ''}"
        if up.configs and down.configs:
            origin += f" + {down.source} _down file"
        for M, pick in picks:
            case = MoeCase(shape, M)
            ident = _moe_identity(case, pick.up, pick.down)
            if ident in seen:
                continue
            seen.add(ident)
            per_source.setdefault(source, []).append(
                Case("moe", _moe_name(f"{source} file {dtype_label(shape.dtype)}", case), "fused_moe_kernel",
                     pair_label(pick.up, pick.down),
                     origin, MoeRun(case, launch_config(pick.up), launch_config(pick.down) if pick.down else None)))  # fmt: skip
    out: list[Case] = []
    for source in sorted(per_source, key=lambda s: SOURCES.index(s) if s in SOURCES else 99):
        listed = per_source[source]
        kept = listed if limit is None else listed[:limit]
        if len(kept) < len(listed):
            left_out[source] = len(listed) - len(kept)
        out += kept
    return out


def selftest_prepare(runner: Runner, cases: Iterable[Case]) -> None:
    """SGLang's patched lookup vs the plan, per fused-MoE case: ``runner.lookup[name]`` is
    "agrees" or what SGLang returns instead (:meth:`MoeRun.execute` FAILs the latter)."""
    by_shape: dict[Any, list[Case]] = {}
    for c in cases:
        if isinstance(c.run, MoeRun) and not c.run.guarded:
            by_shape.setdefault(c.run.case.shape, []).append(c)
    for shape, listed in by_shape.items():
        try:
            answers = sglang_choices(runner.spec, shape, sorted({c.run.case.M for c in listed}), patched=True)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            for c in listed:
                runner.lookup[c.name] = f"not checked: {type(exc).__name__}: {text[-1] if text else ''}"[:400]
            continue
        for c in listed:
            up, down = answers[c.run.case.M]
            got = (launch_config(up), launch_config(down) if down else None)
            want = (c.run.up, c.run.down)
            runner.lookup[c.name] = "agrees" if got == want else f"differs: SGLang's patched lookup returns {got}"


# ------------------------------------------------------------------------------ doctor --model


#: Dtypes whose fused-MoE kernel the analytic bound models (fused_moe_kernel, not the gptq/awq one).
BOUND_DTYPES = frozenset({None, "fp8_w8a8", "int8_w8a8"})


def batch_sizes(launch: Any) -> list[int]:
    """Token counts the fused MoE runs at in a server launch (a ``models.launch.Launch``): graph
    sizes, the chunked-prefill batch, and the lookup grid in between (eager prefill takes any size
    up to the chunk). Under DP attention the MoE sees the tokens of every attention-DP rank."""
    scale = launch.attn_dp
    top = max([launch.chunked_prefill_size, *launch.prefill_graph_bs, *launch.decode_graph_bs, 1]) * scale
    sizes = {
        b * scale for b in (*launch.decode_graph_bs, *launch.prefill_graph_bs, launch.chunked_prefill_size)
    }
    sizes |= {m for m in STANDARD_BATCH_GRID if m <= top}
    return sorted(s for s in sizes if s > 0)


def batch_ranges(ms: list[int], key: Callable[[int], Any]) -> list[tuple[int, int, Any]]:
    """Runs of consecutive batch sizes with the same ``key``: (first, last, key) each."""
    out: list[tuple[int, int, Any]] = []
    for m in ms:
        k = key(m)
        if out and out[-1][2] == k:
            out[-1] = (out[-1][0], m, k)
        else:
            out.append((m, m, k))
    return out


def _freeze(cfg: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in cfg.items() if k != "USE_TMA"))


class FitCache:
    """Fits of distinct (config, patched) pairs of one layer on one GPU, each compiled at most once:
    the analytic bound where it clearly fits (never below the compiled number in its measured
    sample), else the compile-only oracle for the GPU's architecture (both GEMMs)."""

    def __init__(self, spec: GpuSpec, shape: MoeShape, *, compile: bool, progress: Any = None) -> None:
        self.spec, self.shape, self.compile, self.progress = spec, shape, compile, progress
        self.done: dict[Any, Fit] = {}

    def needs_compile(self, cfg: dict[str, Any]) -> bool:
        if self.shape.dtype not in BOUND_DTYPES:
            return True
        bound = estimate_shared(cfg, self.shape.dtype, self.shape.block_shape, self.spec.capability)
        return bound > self.spec.smem_per_block_optin

    def fit(self, cfg: dict[str, Any], m: int, *, patched: bool) -> Fit:
        key = (_freeze(cfg), patched)
        if key not in self.done:
            self.done[key] = self._fit(cfg, m, patched)
        return self.done[key]

    def _fit(self, cfg: dict[str, Any], m: int, patched: bool) -> Fit:
        limit = self.spec.smem_per_block_optin
        if not self.needs_compile(cfg):
            bound = estimate_shared(cfg, self.shape.dtype, self.shape.block_shape, self.spec.capability)
            return Fit(bound, "bound", True)
        if not self.compile:
            bound = estimate_shared(cfg, self.shape.dtype, self.shape.block_shape, self.spec.capability)
            return Fit(bound, "bound only (--no-compile)", None)
        try:

            both = moe_resources_both(
                self.spec,
                E=self.shape.E,
                N=self.shape.N,
                K=self.shape.K,
                topk=self.shape.topk,
                M=m,
                dtype=self.shape.dtype,
                block_shape=list(self.shape.block_shape) if self.shape.block_shape else None,
                config={k: v for k, v in cfg.items() if k != "USE_TMA"},
                per_channel_quant=self.shape.per_channel_quant,
            )
            shared = max(int(r.shared) for r in both.values())
            return Fit(shared, "oracle", shared <= limit)
        except Exception as exc:
            return error_fit(exc)
        finally:
            if self.progress is not None:
                self.progress.update(1)


def planner_rows(
    spec: GpuSpec,
    shape: MoeShape,
    launch: Any,
    *,
    compile: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> list[KernelRow]:
    """``doctor --model``'s fused-MoE rows: the launch's batch sizes (:func:`batch_sizes`) in
    ranges that share a config, with the plugin's choice and SGLang's own, and their fit (one
    compile per distinct config: shared memory depends on the tile and dtype, not on M)."""
    ms = batch_sizes(launch)
    plugin = {m: plugin_choice(spec, shape, m) for m in ms}
    sglang = {m: (up, down or up) for m, (up, down) in sglang_choices_remembered(spec, shape, ms).items()}
    todo: dict[Any, None] = {}
    checker = FitCache(spec, shape, compile=compile)
    for m in ms:
        for cfg, patched in ((plugin[m].up, True), (sglang[m][0], False), (sglang[m][1], False)):
            if cfg and checker.needs_compile(cfg):
                todo[(_freeze(cfg), patched)] = None
    bar = progress(len(todo)) if (progress and compile and todo) else None
    checker.progress = bar
    rows: list[KernelRow] = []

    def key(m: int) -> Any:
        return (_freeze(plugin[m].up), plugin[m].source, _freeze(sglang[m][0]), _freeze(sglang[m][1]))

    for lo, hi, _ in batch_ranges(ms, key):
        c = plugin[lo]
        up, down = sglang[lo]
        batches = f"M={lo}" if lo == hi else f"M={lo}-{hi}"
        src = c.source
        pfit = checker.fit(c.up, lo, patched=True) if c.up else Fit(None, "SGLang's default", None)
        sfit_up = checker.fit(up, lo, patched=False)
        sfit = sfit_up if down == up else _worst(sfit_up, checker.fit(down, lo, patched=False))
        rows.append(KernelRow("fused_moe", batches, tile_label(c.up), src, pfit, pair_label(up, down), sfit))
    if bar is not None:
        bar.close()
    return rows


def _worst(a: Fit, b: Fit) -> Fit:
    if a.fits is False:
        return a
    if b.fits is False:
        return b
    return a if (a.shared or 0) >= (b.shared or 0) else b


# ------------------------------------------------------------------------------ bench


@dataclass(frozen=True)
class MoePoint:
    """``bench``: one batch size of the model's MoE layer, the plugin's configs against SGLang's own."""

    case: MoeCase
    plugin: MoeChoice
    sglang_up: dict[str, Any]
    sglang_down: dict[str, Any] | None
    plugin_fit: Fit
    sglang_fit: Fit

    @property
    def same(self) -> bool:
        return (self.plugin.up, self.plugin.down or self.plugin.up) == (
            self.sglang_up,
            self.sglang_down or self.sglang_up,
        )

    def row(self, limit: int) -> dict[str, Any]:
        return {
            "M": self.case.M,
            "plugin": {
                "config": self.plugin.up,
                "down_config": self.plugin.down,
                "label": pair_label(self.plugin.up, self.plugin.down),
                "source": self.plugin.source,
                "path": self.plugin.path,
                "fit": self.plugin_fit.to_dict(),
                "us": None,
                "check": None,
            },
            "sglang": {
                "config": self.sglang_up,
                "down_config": self.sglang_down,
                "label": pair_label(self.sglang_up, self.sglang_down),
                "fit": self.sglang_fit.to_dict(),
                "status": status(self.same, self.sglang_fit, limit, "same config"),
                "us": None,
            },
            "speedup": 1.0 if self.same else None,
        }

    def jobs(self, row: dict[str, Any]) -> list[Any]:
        wanted = [(self.plugin.up, self.plugin.down)]
        if row["sglang"]["status"] == "pending":
            wanted.append((self.sglang_up, self.sglang_down))
        return [MoeJob.of(self.case, up, down) for up, down in wanted]

    def time(self, row: dict[str, Any], timer: Any) -> None:
        """Both GEMMs of the layer through SGLang's launchers (activations quantized outside the
        timed region), the plugin's configs checked against the float32 reference first."""
        from sglang_consumer_gpu.measure.moe import MoeLayer

        try:
            layer = MoeLayer(self.case)
            check = layer.check(self.plugin.up, self.plugin.down)
            row["plugin"]["check"] = {"ok": check.ok, "error": check.error, "bound": check.bound}
            fns = {"plugin": layer.gemms(self.plugin.up, self.plugin.down)}
            if row["sglang"]["status"] == "pending":
                try:
                    fns["sglang"] = layer.gemms(self.sglang_up, self.sglang_down)
                    fns["sglang"](0)
                except Exception as exc:  # a config the oracle passed that the GPU still refuses
                    need = oor_bytes(exc)
                    row["sglang"]["status"] = (
                        f"failed: OutOfResources, needs {need:,} B (live compile)"
                        if need
                        else f"failed: {type(exc).__name__}: {exc}"[:300]
                    )
                    fns.pop("sglang")
            record(row, timer.compare(fns, slots=len(layer.slots)))
        except Exception as exc:
            row["error"] = row_error(exc)
        finally:
            free()


def model_layer(desc: Any, spec: GpuSpec, tp: int, ep: int) -> tuple[MoeShape | None, str | None]:
    """The MoE layer of a model (a ``models.ModelDescription``) that ``bench`` and ``selftest --model``
    run, or None and why not (then they run its attention only). A layout the model cannot be
    split into (``tp``/``ep``) raises ModelConfigError."""
    from sglang_consumer_gpu.models import moe_shape

    if not desc.is_moe:
        return None, f"{desc.name} is not a MoE model (no expert count in its config): attention only"
    q = desc.quantization
    if q.moe_dtype == "other":
        return None, f"{desc.name}'s {q.method} experts do not run SGLang's Triton fused MoE: attention only"
    shape = moe_shape(desc, tp, ep)
    if shape.dtype not in (None, "fp8_w8a8", "int8_w8a8"):
        return None, (
            f"{desc.name}'s experts are {shape.dtype}: they run SGLang's fused_moe_kernel_gptq_awq, "
            "whose config the plugin does not change: attention only"
        )
    why = unsupported(spec, shape)
    if why:
        return None, f"{why}: attention only"
    return shape, None


def bench_points(spec: GpuSpec, desc: Any, *, tp: int, ep: int, ms: Sequence[int] | None = None) -> BenchPart:
    """``bench``'s fused-MoE points: per batch size (default: the sizes SGLang's default launch
    runs the MoE at, :func:`batch_sizes`: the lookup grid 1 .. 4096 up to the 4,096-token
    prefill chunk), :func:`plugin_choice` and SGLang's own ``try_get_optimal_moe_config``
    without the plugin. Whether each fits comes from :class:`FitCache`: the analytic bound where
    it clearly fits, else the compile-only oracle for the GPU's architecture."""
    from sglang_consumer_gpu.models.launch import Launch

    shape, why = model_layer(desc, spec, tp, ep)
    part = BenchPart("moe", notes=[why] if why else [], model={"moe_layer": shape.label if shape else None})
    if shape is None:
        return part
    ms = list(ms) if ms else batch_sizes(Launch(argv=(), tp=tp, ep=ep))
    try:
        part.points = list(_bench_points(spec, shape, desc.activation_dtype, ms))
    except Exception as exc:  # an SGLang whose config lookup answers differently
        part.notes.append(f"fused MoE not benched: SGLang's own choice could not be read ({error_text(exc)})")
    if not active(spec):
        part.notes.append(
            f"the plugin does not change fused-MoE configs on {spec.name} "
            f"({spec.smem_per_block_optin:,} B per block): its choice is SGLang's own"
        )
    return part


def _bench_points(spec: GpuSpec, shape: MoeShape, act: str, ms: Sequence[int]) -> list[MoePoint]:
    sglang = sglang_choices(spec, shape, ms)
    cache = FitCache(spec, shape, compile=True)
    points = []
    for M in ms:
        up, down = sglang[M]
        up = launch_config(up)
        if down is not None:  # SGLang 0.5.23's rule: the down GEMM shares the up GEMM's routing sort
            down = dict(launch_config(down), BLOCK_SIZE_M=up["BLOCK_SIZE_M"])
        if active(spec):
            pick = plugin_choice(spec, shape, M)
            plugin = MoeChoice(launch_config(pick.up), launch_config(pick.down) if pick.down else None,
                               pick.source, pick.path, pick.down_path)  # fmt: skip
        else:
            plugin = MoeChoice(up, down, "sglang: plugin inactive here")
        sfit = cache.fit(up, M, patched=False)
        if down is not None and down != up:
            dfit = cache.fit(down, M, patched=False)
            sfit = (
                dfit
                if dfit.fits is False or (sfit.fits is not False and (dfit.shared or 0) > (sfit.shared or 0))
                else sfit
            )
        pfit = cache.fit(plugin.up, M, patched=True)
        points.append(MoePoint(MoeCase(shape, M, act), plugin, up, down, pfit, sfit))
    return points


@dataclass(frozen=True)
class MoeFamily(Family):
    """Fused MoE (see the module docstring)."""

    name: str = "moe"
    patch_modules: tuple[Any, ...] = (moe_config,)
    kernel_modules: tuple[str, ...] = (moe_config.MODULE, moe_config.LAUNCHER.module)

    def active(self, spec: GpuSpec) -> bool:
        return active(spec)

    def check_providers(self) -> tuple[Provider, ...]:
        return (MoeProvider("moe", baseline=False), MoeProvider("moe-baseline", baseline=True))

    def planner_rows(
        self, spec: GpuSpec, desc: Any, launch: Any, *, compile: bool, progress: Any = None
    ) -> tuple[list[KernelRow], list[str]]:
        from sglang_consumer_gpu.models import ModelConfigError, moe_shape

        if not desc.is_moe:
            return [], []
        if desc.quantization.moe_dtype == "other":
            return [], [f"{desc.quantization.method} experts do not run SGLang's Triton fused-MoE kernel: not checked"]
        try:
            shape = moe_shape(desc, launch.tp, launch.ep)
        except ModelConfigError as exc:
            return [], [f"fused MoE not checked: {exc}"]
        if handed_over(spec, shape):
            return [], []
        rows = planner_rows(spec, shape, launch, compile=compile, progress=progress)
        return rows, [line for line in (variant_note(spec, shape),) if line]

    def selftest_cases(self, spec: GpuSpec, request: Request) -> list[Case]:
        return selftest_cases(spec, request)

    def selftest_prepare(self, runner: Runner, cases: Iterable[Case]) -> None:
        selftest_prepare(runner, cases)

    def bench_points(
        self, spec: GpuSpec, desc: Any, *, tp: int, ep: int, batch_sizes: Sequence[int] | None
    ) -> BenchPart:
        return bench_points(spec, desc, tp=tp, ep=ep, ms=batch_sizes)


FAMILY = MoeFamily()
