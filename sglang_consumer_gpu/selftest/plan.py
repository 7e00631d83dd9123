"""Which kernel paths the selftest runs on a GPU: a function of the GpuSpec and the SGLang version.

:func:`build_plan` lists, for one GPU (the live spec: under an emulated shared-memory cap,
"this H200 with 101,376 B") and one SGLang, every kernel path the plugin chooses there, as
:class:`Case` objects -- each to be compiled, launched on random data with NaN-poisoned
outputs and compared with a float32 reference by :mod:`.run`:

- ``moe``: fused MoE, both GEMMs through SGLang's ``invoke_fused_moe_kernel``, with the configs
  the patched lookup returns (:func:`~sglang_consumer_gpu.families.moe.plugin_choice`): for the Qwen3-30B-A3B layer in
  every dtype the GPU runs (bf16, fp16; fp8_w8a8 per-tensor/per-channel/block from sm_89;
  int8_w8a8 per-channel/block) at the batch sizes :data:`QUICK_M`/:data:`FULL_M` (mostly the
  heuristic on consumer GPUs), plus the entries of every config file the lookup takes for
  this GPU (user-tuned, ``$SGLANG_MOE_CONFIG_DIR``, bundled, SGLang's own: quick, the entry
  that needs the most shared memory per file; full, every distinct config), plus the model's
  own layer with ``--model``;
- ``attention``: extend and context (prefill) attention with the tiles the attention patches
  choose (SGLang's own where it fits), run through SGLang's own, patched, helper;
- ``int8``: the W8A8-INT8 scaled GEMM on the route this GPU gets (the plugin's Triton kernel
  where sgl-kernel has none, else sgl-kernel's);
- ``safety``: the safety net, with a data-center fused-MoE tile (and, full, SGLang's widest
  extend-attention tile) that does not fit the GPU: it must complete through the guard and match.

Areas the plugin leaves to SGLang on this GPU (e.g. every patch on an uncapped H200) are one
SKIP row each, with the reason; a skip is never a pass. The config files present (user,
bundled, SGLang's) are read, so the plan also depends on them -- as the server's lookup does.

Nothing here touches a GPU. The attention tiles need SGLang's module importable (its
capability branches are read from SGLang itself); without SGLang those cases are SKIP rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from sglang_consumer_gpu.families import attention as attention_family
from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.families import safety_net as safety_family
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.attention import ExtendCase, PrefillCase
from sglang_consumer_gpu.measure.moe import MoeCase, config_key, launch_config
from sglang_consumer_gpu.moe.shape import MoeShape, dtype_label
from sglang_consumer_gpu.moe.sources import SOURCES, directories
from sglang_consumer_gpu.moe.validate import pair_label, tile_label
from sglang_consumer_gpu.versions import FIRST_RELEASE, SELFTEST_SGLANG, SGLANG_RELEASES, in_range

QUICK, FULL = "quick", "full"

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

#: Extend attention (Lq, Lv): quick tests GQA 128, MLA 576/512 and every pair whose tile the
#: plugin changes on the GPU; full every known pair (``attention.HEAD_DIMS``). Prefill likewise.
QUICK_EXTEND: tuple[tuple[int, int], ...] = ((128, 128), (576, 512))
FULL_VARIANT_DIMS: tuple[tuple[int, int], ...] = ((128, 128), (576, 512))
QUICK_PREFILL: tuple[int, ...] = (128,)

#: int8 GEMM (N, K) layers (Llama-3-8B qkv, Qwen2.5-7B down-like, Llama-3-70B TP4 up, DeepSeek
#: q_a) and token counts; (out dtype, bias) rotates over the cases.
INT8_NK_QUICK: tuple[tuple[int, int], ...] = ((6144, 4096), (4096, 14336))
INT8_NK_FULL: tuple[tuple[int, int], ...] = ((6144, 4096), (4096, 14336), (14336, 8192), (2112, 7168))
INT8_M_QUICK: tuple[int, ...] = (1, 1000)
INT8_M_FULL: tuple[int, ...] = (1, 33, 255, 4099)
INT8_COMBOS: tuple[tuple[str, bool], ...] = (("bfloat16", True), ("float16", False), ("bfloat16", False))

#: A fused-MoE tile from SGLang's tuned files for data-center GPUs (128x128x128, 8 warps,
#: 4 stages): 196,608 B on sm_80/86/89/120 and 262,144 B on sm_90, more than any GPU allows.
DATACENTER_MOE_TILE: dict[str, int] = {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128,
                                       "GROUP_SIZE_M": 1, "num_warps": 8, "num_stages": 4}  # fmt: skip
SAFETY_MOE_M = 256
#: SGLang's sm_80/sm_90 extend tile for MLA (Lq 576, Lv 512): 106,496 B compiled for sm_89/sm_90.
DATACENTER_EXTEND = ((576, 512), (32, 64, 8))

#: Fused-MoE kernels one MoE case compiles (up and down GEMM).
MOE_KERNELS = 2


# ------------------------------------------------------------------------------ run specs


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


@dataclass(frozen=True)
class AttentionRun:
    """Extend or context attention of ``case``. ``live``: launch through SGLang's own
    (patched) helper and check it answers ``tile``; else launch with ``tile`` forced
    (``guarded``: it does not fit, the safety net must fit it)."""

    case: ExtendCase | PrefillCase
    tile: tuple[int, ...]
    sglang_tile: tuple[int, ...]
    live: bool = True
    guarded: bool = False

    def jobs(self) -> list[Any]:
        from sglang_consumer_gpu.measure.attention import AttentionJob

        return [] if self.guarded else [AttentionJob(self.case, self.tile)]


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


@dataclass(frozen=True)
class Case:
    """One selftest row: what is run (``run``), or why nothing can be (``skip``)."""

    area: str
    name: str
    kernel: str
    config: str = "-"
    source: str = "-"
    run: MoeRun | AttentionRun | Int8Run | None = None
    skip: str | None = None
    error: str | None = None  # planning it failed (SGLang answered unexpectedly): a FAIL row

    def jobs(self) -> list[Any]:
        return self.run.jobs() if self.run is not None else []

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "name": self.name, "kernel": self.kernel, "config": self.config,
                "source": self.source, "skip": self.skip, "error": self.error}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    spec: GpuSpec
    sglang: str | None
    mode: str
    cases: tuple[Case, ...]
    notes: tuple[str, ...] = ()
    left_out: dict[str, int] = field(default_factory=dict)  # file entries over the per-source cap

    @property
    def runnable(self) -> list[Case]:
        """Cases that run (a planning error runs to its FAIL)."""
        return [c for c in self.cases if c.skip is None]

    def jobs(self) -> list[Any]:
        """Compile jobs of every runnable case, once each."""
        out: dict[str, Any] = {}
        for case in self.runnable:
            for job in case.jobs():
                out.setdefault(job.key, job)
        return list(out.values())

    def kernel_compiles(self) -> int:
        """Kernels a cold cache compiles: a fused-MoE job two (up, down) unless another job
        already compiles the same config for the same Triton specialization of M."""
        seen: set[tuple[Any, ...]] = set()
        total = 0
        for job in self.jobs():
            case = getattr(job, "case", None)
            if isinstance(case, MoeCase):
                key = (job.group, job.down_config, _m_class(case))
                if key not in seen:
                    seen.add(key)
                    total += MOE_KERNELS
            else:
                total += 1
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.spec.to_dict(), "sglang": self.sglang, "mode": self.mode,
                "notes": list(self.notes), "left_out": dict(self.left_out),
                "kernel_compiles": self.kernel_compiles(), "cases": [c.to_dict() for c in self.cases]}  # fmt: skip


def _m_class(case: MoeCase) -> tuple[bool, bool]:
    """How Triton specializes the kernel's M-dependent integers (divisible by 16, equal to 1)."""
    tokens = case.M * case.shape.topk
    return tokens % 16 == 0, tokens == 1


# ------------------------------------------------------------------------------ building


def sglang_problem(version: str | None) -> str | None:
    """Why SGLang's kernels cannot be driven here (outside ``versions.SELFTEST_SGLANG``), or None."""
    if version is None:
        return "SGLang is not installed in this Python"
    first, last = FIRST_RELEASE["selftest"], SGLANG_RELEASES[-1]
    try:
        if Version(version) < Version(first):
            return f"SGLang {version} is older than {first}: the engine drives SGLang's sglang.kernels.ops modules"
    except InvalidVersion:
        return None
    if not in_range(version, SELFTEST_SGLANG):
        return f"SGLang {version} is newer than {last}, the newest release the plugin covers: its patches stand down"
    return None


def build_plan(
    spec: GpuSpec,
    *,
    sglang: str | None,
    quick: bool,
    model_shapes: Iterable[tuple[str, MoeShape, str]] = (),
    model_attention: Iterable[tuple[int, int]] = (),
    max_per_source: int | None = None,
) -> Plan:
    """The selftest for ``spec`` and SGLang ``sglang`` (its version, None if absent).

    ``model_shapes``: (name, layer, activation dtype) of a model's MoE layers;
    ``model_attention``: its extend-attention head dims (Lq, Lv); ``max_per_source``: at most
    this many config-file entries per source in full mode (quick: :data:`QUICK_PER_SOURCE`)."""
    problem = sglang_problem(sglang)
    left_out: dict[str, int] = {}
    cases: list[Case] = []
    areas = (
        ("moe", lambda: _moe_cases(spec, problem, quick, list(model_shapes), max_per_source, left_out)),
        ("attention", lambda: _attention_cases(spec, problem, quick, list(model_attention))),
        ("int8", lambda: _int8_cases(spec, quick)),
        ("safety", lambda: _safety_cases(spec, problem, quick)),
    )
    for area, listing in areas:
        try:
            cases += listing()
        except Exception as exc:  # an SGLang whose helpers answer differently: say so, keep the other areas
            text = str(exc).strip().splitlines()
            why = f"could not plan this area: {type(exc).__name__}: {text[-1] if text else ''}"[:400]
            cases.append(Case(area, f"{area} (planning)", "-", error=why))
    notes = []
    if left_out:
        notes.append(
            "config-file entries left out over the per-source limit: "
            + ", ".join(f"{src} {n}" for src, n in left_out.items())
        )
    return Plan(spec, sglang, QUICK if quick else FULL, tuple(_unique(cases)), tuple(notes), left_out)


def _unique(cases: list[Case]) -> Iterator[Case]:
    seen: dict[str, int] = {}
    for c in cases:
        n = seen.get(c.name, 0)
        seen[c.name] = n + 1
        yield c if n == 0 else Case(**{**c.__dict__, "name": f"{c.name} #{n + 1}"})


# -- fused MoE


def _moe_cases(
    spec: GpuSpec,
    problem: str | None,
    quick: bool,
    model_shapes: list[tuple[str, MoeShape, str]],
    max_per_source: int | None,
    left_out: dict[str, int],
) -> list[Case]:

    kernel = "fused_moe_kernel"
    if problem:
        return [Case("moe", "fused MoE", kernel, skip=problem)]
    if not moe_family.active(spec):
        return [Case("moe", "fused MoE", kernel, skip=(
            f"the plugin leaves fused-MoE configs to SGLang on {spec.name} "
            f"({spec.smem_per_block_optin:,} B shared memory per block, not a ~99 KB GPU)"))]  # fmt: skip
    layers: list[tuple[str, MoeShape, str, tuple[int, ...]]] = []
    ms = QUICK_M if quick else FULL_M
    for mode, dtype, block, per_channel, act, in_quick in MOE_MODES:
        if quick and not in_quick:
            continue
        layers.append((mode, dataclasses.replace(moe_family.REFERENCE, dtype=dtype, block_shape=block, per_channel_quant=per_channel), act, ms))
    if not quick:
        layers += [
            (name, MoeShape(E, N, K, topk), "bfloat16", FULL_LAYER_M) for name, E, N, K, topk in FULL_LAYERS
        ]
    layers += [(name, shape, act, ms) for name, shape, act in model_shapes]

    cases: list[Case] = []
    seen: set[tuple[Any, ...]] = set()
    unsupported_dtypes: set[str] = set()
    for name, shape, act, layer_ms in layers:
        why = moe_family.unsupported(spec, shape) or _engine_problem(shape)
        if why:
            if shape.dtype not in unsupported_dtypes:  # one row per dtype
                unsupported_dtypes.add(str(shape.dtype))
                what = f"every {dtype_label(shape.dtype)} mode" if shape.dtype else name
                cases.append(Case("moe", f"fused MoE {what}", kernel, skip=why))
            continue
        for M in layer_ms:
            pick = moe_family.plugin_choice(spec, shape, M)
            case = MoeCase(shape, M, act)
            seen.add(_moe_identity(case, pick.up, pick.down))
            source = f"{pick.source} file {Path(pick.path).name}" if pick.path else pick.source
            cases.append(Case("moe", _moe_name(name, case), kernel, pair_label(pick.up, pick.down),
                              source, MoeRun(case, launch_config(pick.up),
                                                  launch_config(pick.down) if pick.down else None)))  # fmt: skip
    cases += _file_cases(spec, quick, max_per_source, seen, left_out)
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
        config_key(up),
        config_key(down) if down else None,
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
    from sglang_consumer_gpu.moe.smem import estimate_shared

    limit = QUICK_PER_SOURCE if quick else max_per_source
    ups: dict[Any, None] = {}
    for key in moe_family.file_keys(spec, directories()):
        ups[moe_family.config_key(moe_family.file_shape(key))] = None
    per_source: dict[str, list[Case]] = {}
    for key in ups:
        shape = moe_family.file_shape(key)
        up, down = find_configs(key, spec), find_configs(moe_family.config_key(shape, down=True), spec)
        entries = up.configs or down.configs
        if not entries or moe_family.unsupported(spec, shape) or _engine_problem(shape):
            continue  # every file rejected: the heuristic answers (the grid above tests it)
        source = up.source if up.configs else down.source
        picks = [(M, moe_family.plugin_choice(spec, shape, M)) for M in sorted(entries)]
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


# -- attention


def _attention_cases(
    spec: GpuSpec, problem: str | None, quick: bool, model_dims: list[tuple[int, int]]
) -> list[Case]:
    from sglang_consumer_gpu.attention import HEAD_DIMS, PREFILL_HEAD_DIMS
    from sglang_consumer_gpu.measure.attention import VARIANTS

    if problem:
        return [Case("attention", "Triton attention", "extend/prefill attention", skip=problem)]
    out: list[Case] = []
    if not attention_family.extend_active(spec):
        out.append(
            Case(
                "attention",
                "extend attention",
                "_fwd_kernel (extend)",
                skip=_inactive(spec, "extend-attention"),
            )
        )
    else:
        tiles = attention_family.extend_tiles_for(spec, list(dict.fromkeys([*HEAD_DIMS, *model_dims])))
        # quick: GQA 128 and MLA, plus every head dim where the plugin replaces SGLang's tile
        changed = [d for d, (plugin, sglang) in tiles.items() if plugin != sglang]
        dims = list(dict.fromkeys([*QUICK_EXTEND, *changed, *model_dims])) if quick else list(tiles)
        for lq, lv in dims:
            plugin, sglang = tiles[(lq, lv)]
            variants = VARIANTS if not quick and (lq, lv) in FULL_VARIANT_DIMS else ("causal",)
            for variant in variants:
                case = ExtendCase.for_check(lq, lv, variant)
                out.append(_attention_case(case, "_fwd_kernel (extend)", plugin, sglang))
        if not quick:
            case = ExtendCase.for_check(128, 128, dtype="float16")
            out.append(_attention_case(case, "_fwd_kernel (extend)", *tiles[(128, 128)]))
    if not attention_family.prefill_active(spec):
        out.append(
            Case(
                "attention",
                "context attention",
                "_fwd_kernel (prefill)",
                skip=_inactive(spec, "prefill-attention"),
            )
        )
    else:
        ptiles = {d: attention_family.prefill_tiles(spec, d) for d in PREFILL_HEAD_DIMS}
        changed_d = [d for d, (plugin, sglang) in ptiles.items() if plugin != sglang]
        for d in list(dict.fromkeys([*QUICK_PREFILL, *changed_d])) if quick else PREFILL_HEAD_DIMS:
            for causal in (False,) if quick or d != 128 else (False, True):
                case = PrefillCase.for_check(d, causal)
                out.append(_attention_case(case, "_fwd_kernel (prefill)", *ptiles[d]))
    return out


def _attention_case(
    case: ExtendCase | PrefillCase, kernel: str, plugin: tuple[int, ...], sglang: tuple[int, ...]
) -> Case:
    source = "SGLang's own tile (fits; the plugin keeps it)" if plugin == sglang else (
        f"plugin (SGLang's {_tile_text(sglang)} does not fit)")  # fmt: skip
    return Case(
        "attention", case.label, kernel, _tile_text(plugin), source, AttentionRun(case, plugin, sglang)
    )


def _tile_text(tile: tuple[int, ...]) -> str:
    if len(tile) == 2:
        return f"BLOCK {tile[0]} w{tile[1]}"
    return f"{tile[0]}x{tile[1]} w{tile[2]}"


def _inactive(spec: GpuSpec, what: str) -> str:
    return (
        f"the plugin's {what} patch does not act on {spec.name} "
        f"({spec.arch_name}, {spec.smem_per_block_optin:,} B per block): SGLang's own tiles run"
    )


# -- int8


def _int8_cases(spec: GpuSpec, quick: bool) -> list[Case]:
    from sglang_consumer_gpu.int8.backend import TRITON, int8_backend_for
    from sglang_consumer_gpu.int8.tiles import select_tile

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


# -- the safety net


def _safety_cases(spec: GpuSpec, problem: str | None, quick: bool) -> list[Case]:
    from sglang_consumer_gpu.attention import tile_fits
    from sglang_consumer_gpu.moe.smem import estimate_shared

    if problem:
        return [Case("safety", "safety net", "triton JITFunction._do_compile", skip=problem)]
    if not safety_family.FAMILY.active(spec):
        return [Case("safety", "safety net", "triton JITFunction._do_compile", skip=(
            f"the safety net acts only on ~99 KB GPUs; {spec.name} allows {spec.smem_per_block_optin:,} B per block"))]  # fmt: skip
    out: list[Case] = []
    shape = moe_family.REFERENCE
    need = estimate_shared(DATACENTER_MOE_TILE, None, None, spec.capability)
    label = tile_label(DATACENTER_MOE_TILE)
    name = f"safety net: fused MoE bf16 E={shape.E} N={shape.N} K={shape.K} top{shape.topk} M={SAFETY_MOE_M}"
    if need > spec.smem_per_block_optin:
        case = MoeCase(shape, SAFETY_MOE_M)
        out.append(Case("safety", name, "fused_moe_kernel", label,
                        f"SGLang's data-center tuned-file tile: needs ~{need:,} B > {spec.smem_per_block_optin:,} B",
                        MoeRun(case, dict(DATACENTER_MOE_TILE), None, guarded=True)))  # fmt: skip
    else:
        out.append(
            Case("safety", name, "fused_moe_kernel", label, skip=f"the tile fits this GPU (~{need:,} B)")
        )
    if not quick:
        (lq, lv), tile = DATACENTER_EXTEND
        case = ExtendCase.for_check(lq, lv)
        name = f"safety net: {case.label} with SGLang's sm_80/sm_90 tile"
        if not tile_fits(spec, tile[0], tile[1], lq, lv):
            out.append(Case("safety", name, "_fwd_kernel (extend)", _tile_text(tile),
                            "SGLang's data-center extend tile (106,496 B compiled for sm_89/sm_90)",
                            AttentionRun(case, tile, tile, live=False, guarded=True)))  # fmt: skip
        else:
            out.append(
                Case("safety", name, "_fwd_kernel (extend)", _tile_text(tile), skip="the tile fits this GPU")
            )
    return out
