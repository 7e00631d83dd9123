"""Triton attention: which tiles SGLang's extend and context (prefill) attention launch, with the plugin and without.

The one answer to "what runs for this head dim":

- extend attention (:func:`extend_tiles`): SGLang's own ``_get_block_sizes_for_extend_attention``
  answers for the GPU's capability (read from SGLang itself on a virtual GPU); the plugin's
  ``attention-extend-blocks`` patch keeps that tile where it fits and otherwise takes the
  budget's tile (:func:`sglang_consumer_gpu.patches.attention_extend.choose`);
- context attention (:func:`prefill_tiles`): SGLang's launch for the capability, kept where it
  fits, else :func:`sglang_consumer_gpu.attention.prefill_tile` (the ``attention-prefill-blocks``
  launch filter's rule).

Every SGLang path of the family is a seam of :mod:`sglang_consumer_gpu.patches.attention_extend`
or :mod:`~sglang_consumer_gpu.patches.attention_prefill`. The ``check`` areas ``attention`` /
``attention-baseline`` (:class:`AttentionProvider`) dry-run every Triton attention launch
SGLang makes per head dim (:func:`~sglang_consumer_gpu.oracle.kernels.attention.cases`, as each
can run on the GPU: :func:`~sglang_consumer_gpu.oracle.kernels.attention.for_spec`) through
SGLang's own launchers, with the plugin's patches or without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sglang_consumer_gpu.families.base import Family, Fit, KernelRow, Provider, error_fit, on_gpu
from sglang_consumer_gpu.families.bench_points import BenchPart, free, record, row_error, status
from sglang_consumer_gpu.families.cases import FAIL, Case, Request, Result, Runner, inactive, tile_text
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.attention import WORKLOADS, AttentionJob, ExtendCase, PrefillCase
from sglang_consumer_gpu.models.description import ModelDescription
from sglang_consumer_gpu.oracle.core import Resources
from sglang_consumer_gpu.oracle.item import CheckItem, error_text
from sglang_consumer_gpu.oracle.kernels.attention import AttentionCase, cases, for_spec, launch_resources
from sglang_consumer_gpu.patches import attention_extend, attention_prefill

ExtendTile = tuple[int, int, int]  # (BLOCK_M, BLOCK_N, num_warps)
PrefillTile = tuple[int, int]  # (BLOCK, num_warps)


def extend_active(spec: GpuSpec) -> bool:
    return bool(attention_extend.PATCH.needed_on(spec))


def prefill_active(spec: GpuSpec) -> bool:
    return bool(attention_prefill.PATCH.needed_on(spec))


def sglang_extend_blocks(
    spec: GpuSpec, dims: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], tuple[int, ...]]:
    """SGLang's own ``_get_block_sizes_for_extend_attention`` 6-tuple (BLOCK_DMODEL, BLOCK_DPE,
    BLOCK_DV, BLOCK_M, BLOCK_N, num_warps) per (Lq, Lv) on ``spec``: its capability branch."""
    ea = importlib.import_module(attention_extend.MODULE)
    with on_gpu(spec, patched=False):
        return {(lq, lv): tuple(getattr(ea, attention_extend.ATTR)(lq, lv)) for lq, lv in dims}


def extend_tiles(spec: GpuSpec, lq: int, lv: int) -> tuple[ExtendTile, ExtendTile]:
    """(what runs with the plugin, what SGLang alone runs) for extend attention on ``spec``."""
    return extend_tiles_for(spec, [(lq, lv)])[(lq, lv)]


def extend_tiles_for(
    spec: GpuSpec, dims: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], tuple[ExtendTile, ExtendTile]]:
    """:func:`extend_tiles` for several head-dim pairs at once."""
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
    from sglang_consumer_gpu.patching.registry import unpatched

    with unpatched():
        sglang = sglang_prefill_tile(head_dim, spec.capability)
    d = next_pow2(head_dim)
    if not prefill_active(spec) or tile_fits(spec, sglang[0], sglang[0], d, d, elem_bytes):
        return sglang, sglang
    tile = prefill_tile(spec, head_dim, elem_bytes)
    return (tile.block_m, tile.num_warps), sglang


def prefill_rewrites() -> int:
    """How many launches the context-attention filter rewrote in this process."""
    return attention_prefill.REWRITES[0]


# ------------------------------------------------------------------------------ check


def launches(spec: GpuSpec, case: AttentionCase, *, patched: bool) -> list[Resources]:
    """Shared memory of every kernel ``case`` launches on ``spec``, with the plugin's patches
    or SGLang's own code (raises if it does not compile)."""
    with on_gpu(spec, patched=patched):
        return launch_resources(spec, case)


def _resources(spec: GpuSpec, case: AttentionCase, *, patched: bool) -> list[Resources]:
    """The case's kernels; a one-kernel launch is named after its launcher (``attention.extend``)."""
    found = launches(spec, case, patched=patched)
    if len(found) == 1:
        return [replace(found[0], kernel=f"attention.{case.launcher}")]
    return found


@dataclass(frozen=True)
class AttentionProvider:
    """Attention launches with the plugin's tiles (``baseline=False``) or SGLang's own."""

    area: str
    baseline: bool
    drives_sglang: bool = True

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        for case in cases(full=full):
            yield CheckItem(
                kernel=f"attention.{case.launcher}",
                config=for_spec(case, spec).label,
                run=lambda case=case: _resources(spec, case, patched=not self.baseline),
            )


# ------------------------------------------------------------------------------ selftest


#: Extend attention (Lq, Lv): quick tests GQA 128, MLA 576/512 and every pair whose tile the
#: plugin changes on the GPU; full every known pair (``attention.HEAD_DIMS``). Prefill likewise.
QUICK_EXTEND: tuple[tuple[int, int], ...] = ((128, 128), (576, 512))
FULL_VARIANT_DIMS: tuple[tuple[int, int], ...] = ((128, 128), (576, 512))
QUICK_PREFILL: tuple[int, ...] = (128,)


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

    def execute(self, runner: Runner, case: Case) -> Result:
        """Through SGLang's own (patched) launcher, its helper's answer checked against ``tile``
        (extend) or the launch filter's rewrite against the plan (context attention); with
        ``tile`` forced when not ``live``; poisoned outputs against the float32 reference."""
        from sglang_consumer_gpu.measure.attention import ExtendCase, ExtendRun, PrefillRun

        if self.guarded and runner.safety.get("safety-net") != "applied":
            return Result(case, FAIL, f"the safety net is not installed: {runner.safety or 'no status'}")
        if isinstance(self.case, ExtendCase):
            run = ExtendRun(self.case, slots=1, device=runner.device)
            if not self.live:
                result = runner.verdict(case, run.check(self.tile))
                return runner.guard_verdict(result, "_fwd_kernel") if self.guarded else result
            helper = getattr(run.ea, attention_extend.ATTR)
            answer = tuple(helper(self.case.lq, self.case.lv)[3:6])
            if answer != tuple(self.tile):
                return Result(case, FAIL, f"SGLang's extend-attention helper answers {answer} in this process, the "
                              f"plugin chose {tuple(self.tile)} (attention-extend-blocks: "
                              f"{runner.patches.get('attention-extend-blocks', 'not registered')})")  # fmt: skip
            return runner.verdict(case, run.check(None), tile=list(answer))
        run = PrefillRun(self.case, slots=1, device=runner.device)
        before = prefill_rewrites()
        check = run.check(None)
        rewrote = prefill_rewrites() > before
        if rewrote != (tuple(self.tile) != tuple(self.sglang_tile)):
            status = runner.patches.get("attention-prefill-blocks", "not registered")
            return Result(case, FAIL, f"the prefill launch filter {'rewrote' if rewrote else 'did not rewrite'} SGLang's "
                          f"tile {tuple(self.sglang_tile)}; the plugin chose {tuple(self.tile)} (attention-prefill-blocks: "
                          f"{status})", check.error, check.bound)  # fmt: skip
        return runner.verdict(case, check, tile=list(self.tile))


def selftest_cases(spec: GpuSpec, request: Request) -> list[Case]:
    """Extend and context attention with the tiles :func:`extend_tiles_for` / :func:`prefill_tiles`
    give (SGLang's own where it fits), run through SGLang's own, patched, helper."""
    from sglang_consumer_gpu.attention import HEAD_DIMS, PREFILL_HEAD_DIMS
    from sglang_consumer_gpu.measure.attention import VARIANTS

    problem, quick, model_dims = request.problem, request.quick, list(request.model_attention)
    if problem:
        return [Case("attention", "Triton attention", "extend/prefill attention", skip=problem)]
    out: list[Case] = []
    if not extend_active(spec):
        out.append(
            Case(
                "attention",
                "extend attention",
                "_fwd_kernel (extend)",
                skip=inactive(spec, "extend-attention"),
            )
        )
    else:
        tiles = extend_tiles_for(spec, list(dict.fromkeys([*HEAD_DIMS, *model_dims])))
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
    if not prefill_active(spec):
        out.append(
            Case(
                "attention",
                "context attention",
                "_fwd_kernel (prefill)",
                skip=inactive(spec, "prefill-attention"),
            )
        )
    else:
        ptiles = {d: prefill_tiles(spec, d) for d in PREFILL_HEAD_DIMS}
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
        f"plugin (SGLang's {tile_text(sglang)} does not fit)")  # fmt: skip
    return Case(
        "attention", case.label, kernel, tile_text(plugin), source, AttentionRun(case, plugin, sglang)
    )


# ------------------------------------------------------------------------------ doctor --model


def model_cases(desc: ModelDescription, launch: Any) -> list[AttentionCase]:
    """The Triton attention launches SGLang's triton backend makes for this model (per GPU) in a
    server launch (a ``models.launch.Launch``): heads per GPU after attention TP, the latent
    shape for MLA, the KV-cache dtype."""
    a = desc.attention
    kv = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}.get(launch.kv_cache_dtype, "")
    heads = max(1, a.q_heads // launch.attn_tp)
    dtype = "float16" if launch.model_dtype == "float16" else "bfloat16"
    if a.is_mla:
        latent = (a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)
        return [
            AttentionCase("extend", a.head_dim, a.v_head_dim, dtype, kv, q_heads=heads, kv_heads=heads),
            AttentionCase("extend", latent, a.kv_lora_rank or 0, dtype, kv, q_heads=heads, kv_heads=1),
            AttentionCase("decode", latent, a.kv_lora_rank or 0, dtype, kv, q_heads=heads, kv_heads=1),
        ]
    kvh = max(1, a.kv_heads // launch.attn_tp)
    variant = "sliding_window" if a.sliding_window else "causal"
    return [
        AttentionCase("extend", a.head_dim, a.v_head_dim, dtype, kv, variant, q_heads=heads, kv_heads=kvh),
        AttentionCase("decode", a.head_dim, a.v_head_dim, dtype, kv, q_heads=heads, kv_heads=kvh),
    ]


def planner_rows(spec: GpuSpec, desc: ModelDescription, launch: Any, *, compile: bool = True) -> list[KernelRow]:
    """``doctor --model``'s attention rows: every launch of :func:`model_cases`, with the plugin's
    patches and without (triton backend only; other backends run no Triton attention kernel)."""
    rows: list[KernelRow] = []
    limit = spec.smem_per_block_optin
    for case in model_cases(desc, launch):
        fits: list[Fit] = []
        for patched in (True, False):
            if not compile:
                fits.append(Fit(None, "not compiled (--no-compile)", None))
                continue
            try:
                res = launches(spec, case, patched=patched)
                worst = max(res, key=lambda r: r.shared)
                fits.append(Fit(int(worst.shared), "oracle", all(r.shared <= limit for r in res)))
            except Exception as exc:
                fits.append(error_fit(exc))
        label = f"{case.launcher} Lq={case.lq} Lv={case.lv} {case.q_heads}/{case.kv_heads} heads"
        if case.kv_dtype:
            label += f" kv={case.kv_dtype}"
        rows.append(
            KernelRow(
                "attention", label, "plugin's tiles", "attention patches", fits[0], "SGLang's tiles", fits[1]
            )
        )
    return rows


# ------------------------------------------------------------------------------ bench


@dataclass(frozen=True)
class AttentionPoint:
    """``bench``: one extend launch of the model at one workload, the plugin's tile against SGLang's own."""

    label: str
    workload: str
    case: ExtendCase
    plugin: ExtendTile
    sglang: ExtendTile
    sglang_fit: Fit

    @property
    def same(self) -> bool:
        return self.plugin == self.sglang

    def row(self, limit: int) -> dict[str, Any]:
        return {"kernel": self.label, "workload": self.workload, "plugin": {"tile": list(self.plugin), "us": None},
                "sglang": {"tile": list(self.sglang), "fit": self.sglang_fit.to_dict(),
                           "status": status(self.same, self.sglang_fit, limit, "same tile"), "us": None},
                "speedup": 1.0 if self.same else None}  # fmt: skip

    def jobs(self, row: dict[str, Any]) -> list[Any]:
        tiles = [self.plugin, self.sglang] if row["sglang"]["status"] == "pending" else [self.plugin]
        return [AttentionJob(self.case, t) for t in tiles]

    def time(self, row: dict[str, Any], timer: Any) -> None:
        from sglang_consumer_gpu.measure.attention import ExtendRun

        try:
            run = ExtendRun(self.case)
            fns = {"plugin": run.run(self.plugin)}
            if row["sglang"]["status"] == "pending":
                fns["sglang"] = run.run(self.sglang)
            record(row, timer.compare(fns, slots=len(run.slots)))
        except Exception as exc:
            row["error"] = row_error(exc)
        finally:
            free()


def bench_points(spec: GpuSpec, desc: ModelDescription, *, tp: int) -> BenchPart:
    """``bench``'s extend-attention points: each extend launch of the model (:func:`model_cases`:
    heads per GPU after TP, the latent shape for MLA) at the engine's two workloads
    (:data:`~sglang_consumer_gpu.measure.attention.WORKLOADS`: prefill-heavy, 4 sequences x
    2,048 new tokens after 512 cached; decode-heavy, 64 x 8 after 2,048), the tile the plugin's
    patch chooses and SGLang's own capability-branch tile, SGLang's fit from the oracle."""
    part = BenchPart("attention")
    try:
        part.points = list(_bench_points(spec, desc, tp))
    except Exception as exc:
        part.notes.append(f"attention not benched: SGLang's own tiles could not be read ({error_text(exc)})")
    if not extend_active(spec):
        part.notes.append(f"the plugin's extend-attention patch does not act on {spec.name}: SGLang's own tiles")
    return part


def _bench_points(spec: GpuSpec, desc: ModelDescription, tp: int) -> list[AttentionPoint]:
    from sglang_consumer_gpu.models.launch import Launch

    points = []
    for ac in model_cases(desc, Launch(argv=(), tp=tp)):
        if ac.launcher != "extend":
            continue  # decode attention: the plugin keeps SGLang's tiles
        plugin, sglang = extend_tiles(spec, ac.lq, ac.lv)
        try:
            res = launches(spec, ac, patched=False)
            shared = max(r.shared for r in res)
            fit = Fit(int(shared), "oracle", shared <= spec.smem_per_block_optin)
        except Exception as exc:
            fit = Fit(None, f"error: {error_text(exc)}", None)
        label = f"extend Lq={ac.lq} Lv={ac.lv} {ac.q_heads}/{ac.kv_heads} heads"
        for workload, (b, n, p) in WORKLOADS.items():
            variant = ac.variant if ac.variant in ("causal", "sliding_window") else "causal"
            case = ExtendCase(ac.lq, ac.lv, ac.q_heads, ac.kv_heads, (n,) * b, (p,) * b, variant)
            points.append(AttentionPoint(label, workload, case, plugin, sglang, fit))
    return points


@dataclass(frozen=True)
class AttentionFamily(Family):
    """Triton attention (see the module docstring)."""

    name: str = "attention"
    patch_modules: tuple[Any, ...] = (attention_extend, attention_prefill)
    kernel_modules: tuple[str, ...] = (attention_extend.MODULE, attention_prefill.MODULE)

    def active(self, spec: GpuSpec) -> bool:
        return extend_active(spec) or prefill_active(spec)

    def check_providers(self) -> tuple[Provider, ...]:
        return (AttentionProvider("attention", baseline=False), AttentionProvider("attention-baseline", baseline=True))

    def planner_rows(
        self, spec: GpuSpec, desc: Any, launch: Any, *, compile: bool, progress: Any = None
    ) -> tuple[list[KernelRow], list[str]]:
        if launch.attention_backend == "triton":
            return planner_rows(spec, desc, launch, compile=compile), []
        return [], [
            f"attention runs in SGLang's {launch.attention_backend or 'default'} backend (FlashInfer/FA3 kernels, "
            "not Triton): nothing for the shared-memory oracle to compile; with --attention-backend triton the "
            "Triton launches are checked"
        ]

    def selftest_cases(self, spec: GpuSpec, request: Request) -> list[Case]:
        return selftest_cases(spec, request)

    def bench_points(
        self, spec: GpuSpec, desc: Any, *, tp: int, ep: int, batch_sizes: Sequence[int] | None
    ) -> BenchPart:
        return bench_points(spec, desc, tp=tp)


FAMILY = AttentionFamily()
