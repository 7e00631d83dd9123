"""Sweeps of SGLang's fused-MoE config space: the benchmark rounds' method and a tuner's exhaustive reference.

Two halves, so that a GPU machine only times:

1. **Plan** (any machine, compile-only): :func:`search_space` is SGLang's tuning space
   (``benchmark/kernels/fused_moe_triton/tuning_fused_moe_triton.py``: BLOCK_M {16..256} x BLOCK_N
   {32..256} x BLOCK_K {64,128,256} x warps {4,8} x stages {2..5} x GROUP_M {1,16,32,64}),
   pruned to keep it affordable: GROUP_SIZE_M is 1 in the sweep and refined afterwards
   ({16,32,64} for the three fastest configs of each point), 8 warps only for tiles of at least
   64x128, 4 warps only up to 128x128, and per tile only the two deepest pipelines that fit by
   the analytic bound (:func:`deepest`). :func:`prove_space` keeps the configs the
   compile-only oracle proves fit the GPU (both GEMMs, SGLang's own launcher); a plan adds, per
   batch size, SGLang's default as it answers on that GPU
   (:func:`sglang_consumer_gpu.families.moe.sglang_default`) and the plugin's heuristic.
2. **Sweep** (the GPU, :func:`run_sweep`): compile everything in parallel processes; time each
   candidate once (one graph-timed sample set per config, early exit for configs whose eager
   launch is already over twice the best so far); compile and time the GROUP_SIZE_M refinement
   of the three fastest; re-time the finalists -- the five fastest, SGLang's default and the
   heuristic -- interleaved over several rounds (:meth:`~sglang_consumer_gpu.measure.timer.Timer.compare`),
   and check default, heuristic and best against the float32 reference. Reported times are
   the interleaved ones.

Results keep the format of the earlier rounds (``results/moe_bench*.json``): per case, per
point ``space_us`` (the single sweep), ``finalists_us`` and ``default`` / ``heuristic`` /
``best`` with ``config``, ``us`` and ``rel_err``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from sglang_consumer_gpu.measure.compile import spawn_pool
from sglang_consumer_gpu.measure.moe import (
    CONFIG_KEYS,
    MoeCase,
    MoeJob,
    config_key,
    launch_config,
    parse_config_key,
)
from sglang_consumer_gpu.moe.shape import MoeShape

GROUP_SIZES = (16, 32, 64)
FINALISTS = 5
EARLY_EXIT = 2.0  # a config whose eager launch exceeds this times the best so far is not graph-timed


def search_space() -> list[dict[str, int]]:
    """SGLang's tuning space with the pruning of the module docstring (GROUP_SIZE_M = 1)."""
    out = []
    for bm, bn, bk, w, s in itertools.product(
        (16, 32, 64, 128, 256), (32, 64, 128, 256), (64, 128, 256), (4, 8), (2, 3, 4, 5)
    ):
        if (w == 8 and bm * bn < 64 * 128) or (w == 4 and bm * bn > 128 * 128):
            continue
        out.append(dict(zip(CONFIG_KEYS, (bm, bn, bk, 1, w, s), strict=True)))
    return out


def deepest(cands: Iterable[dict[str, int]], n: int = 2) -> list[dict[str, int]]:
    """Per (BM, BN, BK, warps), the ``n`` largest num_stages among ``cands``."""
    by_tile: dict[tuple[int, ...], list[dict[str, int]]] = {}
    for c in cands:
        by_tile.setdefault(tuple(c[k] for k in (*CONFIG_KEYS[:3], "num_warps")), []).append(c)
    return [c for group in by_tile.values() for c in sorted(group, key=lambda c: -c["num_stages"])[:n]]


def bound_space(spec: Any, shape: MoeShape) -> tuple[list[dict[str, int]], int]:
    """(the configs of :func:`search_space` the analytic shared-memory bound admits on ``spec``
    for ``shape``, pruned by :func:`deepest`; how many configs the space has). With block
    quantization BLOCK_SIZE_K must divide the quant block's K (one scale per K step), as in
    SGLang's tuning script. The bound never undercounts what Triton allocates (docs/moe.md),
    so every config returned fits; the oracle proves it (:func:`prove_space`)."""
    from sglang_consumer_gpu.moe.smem import fits

    block_k = shape.block_shape[1] if shape.block_shape else 0
    space = search_space()
    admitted = (
        c for c in space
        if fits(c, shape.dtype, spec, shape.block_shape) and not (block_k and block_k % c["BLOCK_SIZE_K"])
    )  # fmt: skip
    return deepest(admitted), len(space)


def _oracle_shared(item: tuple[Any, MoeShape, dict[str, int]]) -> int | None:
    """Shared memory of the larger GEMM (M = 64: it does not depend on M), or None if it failed."""
    from sglang_consumer_gpu.oracle.kernels.moe import moe_resources

    spec, shape, cfg = item
    try:
        return int(moe_resources(spec, E=shape.E, N=shape.N, K=shape.K, topk=shape.topk, M=64, dtype=shape.dtype,
                                 block_shape=list(shape.block_shape) if shape.block_shape else None,
                                 config=cfg, per_channel_quant=shape.per_channel_quant).shared)  # fmt: skip
    except Exception:
        return None


def prove_space(spec: Any, shape: MoeShape, workers: int) -> tuple[list[dict[str, Any]], int]:
    """(configs the oracle proves fit ``spec``, with ``shared_sm89`` and ``estimate``; candidates tried)."""
    from sglang_consumer_gpu.moe.smem import estimate_shared

    cands, _ = bound_space(spec, shape)
    with spawn_pool(workers) as pool:
        shared = list(pool.map(_oracle_shared, [(spec, shape, c) for c in cands], chunksize=8))
    proven = [
        {**c, "shared_sm89": sh, "estimate": estimate_shared(c, shape.dtype)}
        for c, sh in zip(cands, shared, strict=True)
        if sh is not None and sh <= spec.smem_per_block_optin
    ]
    return proven, len(cands)


# ------------------------------------------------------------------------------ sweep (GPU)


def case_shape(c: dict[str, Any]) -> MoeShape:
    return MoeShape(c["E"], c["N"], c["K"], c["topk"], c["dtype"])


Candidates = Callable[[int, dict[str, Any], dict[str, Any]], dict[str, dict[str, int]]]


def space_candidates(ci: int, case: dict[str, Any], point: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Every proven config of the case's space (the exhaustive sweep)."""
    return {config_key(launch_config(c)): launch_config(c) for c in case["space"]}


#: Configs a point may name; each named one is timed, re-timed among the finalists and checked.
NAMED = ("default", "heuristic", "pick")


def _named(point: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {n: launch_config(point[n]) for n in NAMED if n in point}


def run_sweep(
    doc: dict[str, Any],
    case_ids: list[int],
    candidates: Candidates,
    *,
    workers: int | None = None,
    budget_s: float | None = None,
    warm_budget_s: float | None = None,
    small_m_full: bool = False,
    refine: bool = True,
    on_case: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Time the plan ``doc``'s cases ``case_ids`` on the live GPU (see the module docstring).

    ``candidates(ci, case, point)``: the configs to sweep at a point (the point's named configs,
    :data:`NAMED`, are always added). ``small_m_full``: no early exit for BLOCK_SIZE_M <= 32 at M <= 64, where
    launch overhead decides. ``warm_budget_s``: configs not compiled by then are left out
    (default and heuristic compile first); ``budget_s``: points not reached are left out.
    Both are recorded. ``on_case``: called with the results after each case (partial saves)."""
    import torch

    from sglang_consumer_gpu.measure.common import environment
    from sglang_consumer_gpu.measure.compile import LATE, precompile
    from sglang_consumer_gpu.measure.moe import MoeLayer
    from sglang_consumer_gpu.measure.timer import Timer

    t0 = time.time()
    cases = doc["cases"]
    todo = []
    for ci in case_ids:
        c = cases[ci]
        for p in c["points"]:
            cands = {**candidates(ci, c, p), **{config_key(v): v for v in _named(p).values()}}
            todo.append((ci, p, cands))
    jobs = {(ci, p["M"], k): MoeJob.of(MoeCase(case_shape(cases[ci]), p["M"]), cfg) for ci, p, cands in todo
            for k, cfg in cands.items()}  # fmt: skip
    first = [jobs[(ci, p["M"], config_key(cfg))].key for ci, p, _ in todo for cfg in _named(p).values()]
    compiled = precompile(list(jobs.values()), workers, deadline=t0 + warm_budget_s if warm_budget_s else None,
                          first=first)  # fmt: skip
    why = {jk: compiled.get(job.key, "") for jk, job in jobs.items()}
    bad = {jk for jk, w in why.items() if w}
    results: dict[str, Any] = {
        **environment(), "plan_file": doc.get("plan_file"), "small_m_full": small_m_full,
        "compile_failed_on_device": {f"{cases[jk[0]]['name']}|{jk[2]}": why[jk] for jk in sorted(bad) if why[jk] != LATE},
        "not_warmed_in_time": sorted({f"{cases[jk[0]]['name']}|{jk[2]}" for jk in bad if why[jk] == LATE}),
        "warm_s": time.time() - t0, "points_not_reached": [], "cases": [],
    }  # fmt: skip
    timer = Timer(rounds=3)
    by_case: dict[int, dict[str, Any]] = {}
    pending = []
    for ci, p, cands in todo:
        c = cases[ci]
        if budget_s is not None and time.time() - t0 > budget_s:
            results["points_not_reached"].append(f"{c['name']}|{c['dtype']}|{p['M']}")
            continue
        if ci not in by_case:
            by_case[ci] = {k: c[k] for k in ("name", "E", "N", "K", "topk", "dtype")} | {
                "space_size": len(c["space"]), "points": []}  # fmt: skip
            results["cases"].append(by_case[ci])
        layer = MoeLayer(MoeCase(case_shape(c), p["M"]))
        named = {n: config_key(cfg) for n, cfg in _named(p).items()}
        timings: dict[str, float] = {}
        skipped: dict[str, float] = {}
        for k, cfg in cands.items():
            if (ci, p["M"], k) in bad and k not in named.values():
                continue
            full = k in named.values() or (small_m_full and p["M"] <= 64 and cfg["BLOCK_SIZE_M"] <= 32)
            best = min(timings.values(), default=math.inf)
            try:
                t = timer.time(
                    layer.gemms(cfg), len(layer.slots), skip_above_us=None if full else EARLY_EXIT * best
                )
            except Exception as exc:
                print(f"{c['name']} M={p['M']} {k} failed: {type(exc).__name__}: {exc}"[:300], flush=True)
                continue
            (skipped if t.skipped else timings)[k] = t.us
        pr = {"M": p["M"], "space_us": timings, "skipped_eager_us": skipped, "named": named}
        by_case[ci]["points"].append(pr)
        pending.append((ci, pr))
        print(f"{c['name']:>19} {c['dtype'] or 'bf16':>8} M={p['M']:>5}: {len(timings)} timed, best "
              f"{min(timings.values(), default=math.nan):.1f} us ({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
        if not refine:
            _finish(pr, layer, timer)
            del layer
            torch.cuda.empty_cache()
            if on_case is not None:
                on_case(results)
    if refine:
        extra = {}
        for ci, pr in pending:
            for k in sorted(pr["space_us"], key=pr["space_us"].get)[:3]:
                for g in GROUP_SIZES:
                    cfg = {**parse_config_key(k), "GROUP_SIZE_M": g}
                    extra[(ci, pr["M"], config_key(cfg))] = MoeJob.of(
                        MoeCase(case_shape(cases[ci]), pr["M"]), cfg
                    )
        left = None if budget_s is None else t0 + budget_s
        done = precompile(list(extra.values()), workers, deadline=left)
        for ci, pr in pending:
            layer = MoeLayer(MoeCase(case_shape(cases[ci]), pr["M"]))
            if budget_s is not None and time.time() - t0 > budget_s:
                # past the budget the point keeps its sweep: finalists re-timed, GROUP_SIZE_M not refined
                pr["group_size_refined"] = False
            else:
                for (rci, rM, k), job in extra.items():
                    if rci == ci and rM == pr["M"] and not done.get(job.key):
                        pr["space_us"][k] = timer.time(layer.gemms(dict(job.config)), len(layer.slots)).us
            _finish(pr, layer, timer)
            del layer
            torch.cuda.empty_cache()
            if on_case is not None:
                on_case(results)
    results["wall_s"] = time.time() - t0
    results["warm_up_s"] = timer.warmed_s
    return results


def _finish(pr: dict[str, Any], layer: Any, timer: Any) -> None:
    """Re-time the finalists interleaved and check default, heuristic and best."""
    named = pr.pop("named")
    ranked = sorted(pr["space_us"], key=pr["space_us"].get)[:FINALISTS]
    keys = list(dict.fromkeys([*ranked, *named.values()]))
    t = timer.compare({k: layer.gemms(parse_config_key(k)) for k in keys}, len(layer.slots), rounds=5)
    pr["finalists_us"] = {k: v.us for k, v in t.items()}
    pr["finalists_spread"] = max(v.spread for v in t.values())
    best = min(pr["finalists_us"], key=pr["finalists_us"].get)
    for name, k in (*named.items(), ("best", best)):
        chk = layer.check(parse_config_key(k))
        pr[name] = {
            "config": parse_config_key(k),
            "us": pr["finalists_us"][k],
            "rel_err": chk.error,
            "ok": chk.ok,
        }
    pr["paths"] = dict(layer.paths)


def oracle_recheck(results: dict[str, Any], spec: Any, workers: int) -> dict[str, Any]:
    """Default, heuristic and best configs compiled for ``spec`` by THIS machine's Triton (the
    plan was proven under another version): ``{case|dtype|config: {shared_sm89, fits}}``."""
    items: dict[str, tuple[Any, MoeShape, dict[str, int]]] = {}
    for c in results["cases"]:
        for p in c["points"]:
            for name in ("default", "heuristic", "best"):
                cfg = p.get(name, {}).get("config")
                if cfg:
                    items.setdefault(
                        f"{c['name']}|{c['dtype']}|{config_key(cfg)}", (spec, case_shape(c), cfg)
                    )
    if not items:
        return {}
    with spawn_pool(min(workers, len(items))) as pool:
        shared = list(pool.map(_oracle_shared, items.values()))
    return {k: {"shared_sm89": sh, "fits": sh is not None and sh <= spec.smem_per_block_optin}
            for k, sh in zip(items, shared, strict=True)}  # fmt: skip


# ------------------------------------------------------------------------------ report


def selected(name: str, only: str | None, dtype: str | None = None) -> bool:
    """``only``: comma-separated substrings of case names, each optionally ``|DTYPE`` (bf16 or
    fp8_w8a8) to pick one dtype of the shape; None: every case."""
    if not only:
        return True
    for o in only.split(","):
        sub, _, want = o.strip().partition("|")
        if sub and sub in name and (not want or want == (dtype or "bf16")):
            return True
    return False


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.measure.common import geomean

    rows = []
    for c in results["cases"]:
        pts = [p for p in c["points"] if p.get("best")]
        hb = [p["best"]["us"] / p["heuristic"]["us"] for p in pts]
        hd = [p["default"]["us"] / p["heuristic"]["us"] for p in pts]
        db = [p["best"]["us"] / p["default"]["us"] for p in pts]
        errs = [
            p[n]["rel_err"]
            for p in pts
            for n in ("default", "heuristic", "best")
            if p[n].get("rel_err") is not None
        ]
        rows.append({"case": c["name"], "dtype": c["dtype"] or "bf16", "space": c["space_size"], "M": [p["M"] for p in pts],
                     "heur_vs_best": hb, "heur_vs_default": hd, "default_vs_best": db,
                     "geo_heur_vs_best": geomean(hb), "min_heur_vs_best": min(hb, default=math.nan),
                     "geo_heur_vs_default": geomean(hd), "geo_best_vs_default": geomean([1 / x for x in db]),
                     "max_rel_err": max(errs, default=math.nan)})  # fmt: skip
    return rows


def report_table(results: dict[str, Any]) -> str:
    lines = [
        f"device: {results.get('device')} (Triton {results.get('triton_device', results.get('triton'))}); "
        "timings are ratios of SGLang's fused_moe_kernel (both GEMMs) measured in one run",
        "",
        "| shape | dtype | configs | heuristic / feasible best (geomean, min) | heuristic vs SGLang RTX-4090 default "
        "(geomean) | best vs default | max rel err |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = summarize(results)
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['space']} | {r['geo_heur_vs_best']:.3f} ({r['min_heur_vs_best']:.3f}) "
            f"| x{r['geo_heur_vs_default']:.3f} | x{r['geo_best_vs_default']:.3f} | {r['max_rel_err']:.1e} |"
        )
    lines += ["", "per point, heuristic speed / best speed (M: ratio):"]
    for r in rows:
        pts = ", ".join(f"{m}: {x:.2f}" for m, x in zip(r["M"], r["heur_vs_best"], strict=True))
        dpts = ", ".join(f"{m}: {x:.2f}" for m, x in zip(r["M"], r["heur_vs_default"], strict=True))
        lines.append(f"- {r['case']} {r['dtype']}: vs best {pts}; vs default {dpts}")
    return "\n".join(lines)
