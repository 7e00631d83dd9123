"""Device check of the measurement engine: every area's correctness, and earlier benchmark cells re-timed.

One call on the device machine (H100/H200) runs, through ``sglang_consumer_gpu.measure``:

1. correctness (NaN-poisoned outputs, float32/float64 references, the engine's bounds):
   fused MoE on the Qwen3-30B-A3B shape (E 128, N 768, K 2048, top-8) for bf16, fp16, fp8_w8a8
   per-tensor / per-channel / block [128, 128] and int8_w8a8 per-channel / block, with the
   config the plugin's lookup chooses for an RTX 4090; extend attention for every head-dim pair
   the plugin knows with the tiles it chooses for RTX 3090/4090/L40S/5090 and SGLang's own
   sm_86/sm_89/sm_120 branch tiles; context attention likewise; the int8 GEMM with the RTX 4090
   dispatch-table tiles (and sgl-kernel's, where it runs);
2. benchmark cells of earlier rounds, re-timed with the engine's timer (interleaved rounds):
   the plugin's fused-MoE heuristic vs SGLang's RTX-4090 default on Qwen3-30B-A3B bf16
   (``results/h100/moe/moe_bench_confirm.json``, docs/moe.md), the attention tiles
   (``results/h100/attention/bench_attention.json``, geomean 1.174x) and the int8 GEMM vs torch._int_mm + epilogue
   (``results/h100/int8/int8_bench.json``, geomean 2.49x). The earlier numbers are from an H100; an H200 is
   the same chip with faster memory, so the comparison is "the same ratio within noise".

Compilation runs first for everything, in parallel processes (jobs not started by half the
budget compile later in the main process); the timing process then compiles nothing. Writes
``engine_check.json`` and ``engine_check.png`` to ``--out``; exit status 0 only if every
correctness case passed and every section ran. ``--quick`` (about 100 jobs: MoE at M 3 and 256,
attention causal plus all variants at head dim 128, int8 on 4 shapes x 3 M, cells: MoE at M 1,
16, 256, 4096, the 7 attention rows where the plugin's tile differs from SGLang's -- the other
13 are 1.0 by definition --, int8 on 4 shapes x 4 M) targets a minute on 16 cores; the full
run (about 420 jobs) about three. ``--budget-s``: no new section starts after that.

    PYTHONPATH=$PWD:$PYTHONPATH python3 scripts/device/engine_check.py --out $OUT --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
from scripts.device.sglang_env import ensure_sglang  # noqa: E402

ensure_sglang()  # an installed SGLang, else the device machine's carry of its kernel files

GPUS = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA L40S", "NVIDIA GeForce RTX 5090")
RTX_4090 = "NVIDIA GeForce RTX 4090"
MOE_MODES = (  # name, dtype, block_shape, per_channel, activation dtype
    ("bf16", None, None, False, "bfloat16"),
    ("fp16", None, None, False, "float16"),
    ("fp8 per-tensor", "fp8_w8a8", None, False, "bfloat16"),
    ("fp8 per-channel", "fp8_w8a8", None, True, "bfloat16"),
    ("fp8 block", "fp8_w8a8", (128, 128), False, "bfloat16"),
    ("int8 per-channel", "int8_w8a8", None, True, "bfloat16"),
    ("int8 block", "int8_w8a8", (128, 128), False, "bfloat16"),
)
INT8_QUICK_NK = ((6144, 4096), (4096, 14336), (28672, 4096), (2112, 7168))
INT8_COMBOS = (("bfloat16", True), ("float16", False), ("bfloat16", False), ("float16", True))


def load(name: str) -> dict[str, Any]:
    return json.loads((REPO / "results" / "h100" / name).read_text())


# ------------------------------------------------------------------------------ what to run


def moe_checks(quick: bool) -> list[dict[str, Any]]:
    import dataclasses

    from sglang_consumer_gpu.families.moe import REFERENCE, plugin_choice
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.moe import MoeCase

    spec = find_gpu(RTX_4090)
    items = []
    for name, dtype, block, per_channel, act in MOE_MODES:
        shape = dataclasses.replace(REFERENCE, dtype=dtype, block_shape=block, per_channel_quant=per_channel)
        for M in (3, 256) if quick else (1, 3, 64, 256, 1024):
            c = plugin_choice(spec, shape, M)
            items.append({"mode": name, "case": MoeCase(shape, M, act), "config": c.up, "source": c.source})
    return items


def moe_cell(quick: bool) -> list[dict[str, Any]]:
    """Qwen3-30B-A3B bf16, heuristic vs SGLang's RTX-4090 default, from the earlier confirm run."""
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.moe import MoeCase, launch_config
    from sglang_consumer_gpu.moe.heuristic import heuristic_config
    from sglang_consumer_gpu.moe.shape import MoeShape

    old = next(
        c
        for c in load("moe/moe_bench_confirm.json")["cases"]
        if c["name"] == "Qwen3-30B-A3B" and c["dtype"] is None
    )
    shape = MoeShape(old["E"], old["N"], old["K"], old["topk"])
    spec = find_gpu(RTX_4090)
    items = []
    for p in old["points"]:
        if quick and p["M"] not in (1, 16, 256, 4096):
            continue
        h = launch_config(p["heuristic"]["config"])
        items.append({"case": MoeCase(shape, p["M"]), "heuristic": h, "default": launch_config(p["default"]["config"]),
                      "old_ratio": p["default"]["us"] / p["heuristic"]["us"],
                      "heuristic_unchanged": launch_config(heuristic_config(p["M"], shape, spec)) == h})  # fmt: skip
    return items


def attention_checks(quick: bool) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.attention import HEAD_DIMS, PREFILL_HEAD_DIMS
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.attention import (
        SGLANG_BRANCHES,
        VARIANTS,
        ExtendCase,
        PrefillCase,
        extend_choices,
        prefill_choices,
    )

    specs = [find_gpu(g) for g in GPUS]
    items = []
    for lq, lv in HEAD_DIMS:
        for tile, who in extend_choices(lq, lv, specs).items():
            variants = VARIANTS if (not quick or (lq, lv) == (128, 128)) else ("causal",)
            items += [
                {"case": ExtendCase.for_check(lq, lv, v), "tile": tile, "chosen_by": who} for v in variants
            ]
    for d in PREFILL_HEAD_DIMS:
        for dtype, causal in (("bfloat16", False), ("bfloat16", True), ("float32", False)):
            if (quick and causal) or (dtype == "float32" and d not in (128, 256)):
                continue
            # SGLang's fp32 sm_120 tile needs more shared memory than even an H200 has: plugin tiles only.
            fp32 = dtype == "float32"
            tiles = prefill_choices(d, specs, () if fp32 else SGLANG_BRANCHES, 4 if fp32 else 2)
            items += [{"case": PrefillCase.for_check(d, causal, dtype), "tile": t, "chosen_by": who}
                      for t, who in tiles.items()]  # fmt: skip
    return items


def attention_cell(quick: bool) -> list[dict[str, Any]]:
    """The plugin's tile vs SGLang's sm_89 tile per benchmark row (quick: where they differ)."""
    from sglang_consumer_gpu.measure.attention import ExtendCase, PrefillCase

    rows = load("attention/bench_attention.json")["rows"]
    items = []
    for r in rows:
        if not r["is_plugin"]:
            continue
        base = next(b for b in rows if b["is_sglang_sm89"] and (b["kernel"], b["lq"], b["workload"]) ==
                    (r["kernel"], r["lq"], r["workload"]))  # fmt: skip
        if quick and base["tile"] == r["tile"]:
            continue
        if r["kernel"] == "extend":
            case = ExtendCase.workload(r["workload"], r["lq"], r["lv"])
            plugin, sglang = tuple(r["tile"]), tuple(base["tile"])
        else:
            case = PrefillCase.vision(r["lq"])
            plugin, sglang = (r["tile"][0], r["tile"][2]), (base["tile"][0], base["tile"][2])
        items.append({"case": case, "plugin": plugin, "sglang": sglang, "old_ratio": r["ratio_vs_sglang_sm89"],
                      "label": f"{r['kernel']} {r['lq']}/{r['lv']} {r['workload']}"})  # fmt: skip
    return items


def int8_checks(quick: bool) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.measure.int8 import unique_nk

    nks = INT8_QUICK_NK if quick else unique_nk()
    ms = (1, 33, 1000) if quick else (1, 33, 255, 4099)
    return [{"n": n, "k": k, "m": m, "dtype": INT8_COMBOS[i % 4][0], "bias": INT8_COMBOS[i % 4][1]}
            for n, k in nks for i, m in enumerate(ms)]  # fmt: skip


def int8_cell(quick: bool) -> list[dict[str, Any]]:
    """Points of the earlier run (23 shapes x 11 M): quick 4 shapes x 4 M, else every shape at 5 M."""
    old = load("int8/int8_bench.json")["results"]
    if quick:
        return [r for r in old if (r["n"], r["k"]) in INT8_QUICK_NK and r["m"] in (1, 64, 512, 4096)]
    return [r for r in old if r["m"] in (1, 16, 128, 1024, 8192)]


def jobs_for(plan: dict[str, list[dict[str, Any]]]) -> list[Any]:
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.int8.tiles import select_tile
    from sglang_consumer_gpu.measure.attention import AttentionJob
    from sglang_consumer_gpu.measure.int8 import Int8Case, Int8Job
    from sglang_consumer_gpu.measure.moe import MoeJob

    spec = find_gpu(RTX_4090)
    jobs: list[Any] = [MoeJob.of(it["case"], it["config"]) for it in plan["moe_checks"]]
    for it in plan["moe_cell"]:
        jobs += [MoeJob.of(it["case"], it["heuristic"]), MoeJob.of(it["case"], it["default"])]
    jobs += [AttentionJob(it["case"], it["tile"]) for it in plan["attention_checks"]]
    for it in plan["attention_cell"]:
        jobs += [AttentionJob(it["case"], it["plugin"]), AttentionJob(it["case"], it["sglang"])]
    for it in plan["int8_checks"]:
        case = Int8Case(it["m"], it["n"], it["k"], it["dtype"], it["bias"])
        tile = tuple(select_tile(spec, it["m"], it["n"], it["k"]).to_list())
        jobs += [Int8Job(case, tile), Int8Job(Int8Case(it["m"], it["n"], it["k"]), tile, raw_acc=True)]
    for r in plan["int8_cell"]:
        jobs.append(
            Int8Job(
                Int8Case(r["m"], r["n"], r["k"]), tuple(select_tile(spec, r["m"], r["n"], r["k"]).to_list())
            )
        )
    return jobs


# ------------------------------------------------------------------------------ running


def guarded(row: dict[str, Any], work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``work(*args)`` for one case; an exception is a failed case with its reason, never
    the end of the run."""
    try:
        row.update(work(*args))
    except Exception as exc:
        row.update(
            ok=False,
            error_text=f"{type(exc).__name__}: {str(exc)[:300]}",
            trace=traceback.format_exc()[-1200:],
        )
    return row


def prime_sglang_paths() -> dict[str, Any]:
    """Run SGLang's helpers each MoE mode needs (quantizer, aligner, activation) once, here,
    before the compile processes start: where SGLang's JIT kernels work, they compile once
    into their disk cache instead of in every worker at once. No GEMM runs (those compile in
    the workers). Returns each mode's paths."""
    import torch

    from sglang_consumer_gpu.measure.moe import MoeCase, MoeLayer, silu_and_mul
    from sglang_consumer_gpu.moe.shape import MoeShape

    def prime(case: Any) -> dict[str, Any]:
        layer = MoeLayer(case, slots=1)  # resolves the quantizer on a probe
        layer.alignment(0, 16)
        _, layer.paths["activation"] = silu_and_mul(torch.randn(8, 256, device="cuda").to(layer.act))
        return dict(layer.paths)

    return {name: guarded({}, prime, MoeCase(MoeShape(8, 128, 256, 2, dtype, block, per_channel), 4, act))
            for name, dtype, block, per_channel, act in MOE_MODES}  # fmt: skip


def run_moe_checks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import torch

    from sglang_consumer_gpu.measure.moe import MoeLayer, config_key

    rows = []
    for it in items:
        case = it["case"]

        def work(case: Any = case, cfg: dict[str, Any] = it["config"]) -> dict[str, Any]:
            r = MoeLayer(case, slots=1).check(cfg)
            return {"ok": r.ok, "error": r.error, "bound": r.bound, "unwritten": r.unwritten, **r.detail}

        row = {"mode": it["mode"], "M": case.M, "config": config_key(it["config"]), "source": it["source"]}
        rows.append(guarded(row, work))
        torch.cuda.empty_cache()
    return rows


def run_attention_checks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.measure.attention import ExtendCase, ExtendRun, PrefillRun

    rows = []
    for it in items:
        case = it["case"]

        def work(case: Any = case, tile: Any = it["tile"]) -> dict[str, Any]:
            run = ExtendRun(case, slots=1) if isinstance(case, ExtendCase) else PrefillRun(case, slots=1)
            r = run.check(tile)
            return {"ok": r.ok, "error": r.error, "bound": r.bound, "unwritten": r.unwritten}

        rows.append(
            guarded({"case": case.label, "tile": list(it["tile"]), "chosen_by": it["chosen_by"]}, work)
        )
    return rows


def run_int8_checks(items: list[dict[str, Any]], sgl_kernel: bool) -> list[dict[str, Any]]:
    import torch

    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.int8 import check_case, extreme_case

    spec = find_gpu(RTX_4090)
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for route in ("triton", "sgl-kernel") if sgl_kernel else ("triton",):
        for it in items:
            rows.append(guarded({"route": route}, lambda it=it, route=route: check_case(
                it["n"], it["k"], it["m"], it["dtype"], it["bias"], spec=spec, gen=gen, route=route)))  # fmt: skip
    rows.append(guarded({"route": "triton", "case": "extreme"}, lambda: extreme_case(spec)))
    return rows


def time_moe_cell(items: list[dict[str, Any]], timer: Any) -> list[dict[str, Any]]:
    import torch

    from sglang_consumer_gpu.measure.moe import MoeLayer

    rows = []
    for it in items:

        def work(it: dict[str, Any] = it) -> dict[str, Any]:
            layer = MoeLayer(it["case"])
            t = timer.compare(
                {n: layer.gemms(it[n]) for n in ("heuristic", "default")}, slots=len(layer.slots)
            )
            checks = {n: layer.check(it[n]).ok for n in ("heuristic", "default")}
            ratio = t["default"].us / t["heuristic"].us
            return {"ok": all(checks.values()), "heuristic_us": t["heuristic"].us, "default_us": t["default"].us,
                    "ratio": ratio, "change": ratio / it["old_ratio"] - 1, "slots": len(layer.slots),
                    "spread": max(x.spread for x in t.values()), "paths": dict(layer.paths)}  # fmt: skip

        rows.append(guarded({"M": it["case"].M, "old_ratio": it["old_ratio"],
                             "heuristic_unchanged": it["heuristic_unchanged"]}, work))  # fmt: skip
        torch.cuda.empty_cache()
    return rows


def time_attention_cell(items: list[dict[str, Any]], timer: Any) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.measure.attention import ExtendCase, ExtendRun, PrefillRun

    rows = []
    for it in items:

        def work(it: dict[str, Any] = it) -> dict[str, Any]:
            case = it["case"]
            run = ExtendRun(case) if isinstance(case, ExtendCase) else PrefillRun(case)
            t = timer.compare(
                {"plugin": run.run(it["plugin"]), "sglang": run.run(it["sglang"])}, slots=len(run.slots)
            )
            ratio = t["sglang"].us / t["plugin"].us
            return {"ok": True, "plugin_us": t["plugin"].us, "sglang_us": t["sglang"].us, "ratio": ratio,
                    "spread": max(x.spread for x in t.values())}  # fmt: skip

        rows.append(guarded({"row": it["label"], "plugin": list(it["plugin"]), "sglang": list(it["sglang"]),
                             "old_ratio": it["old_ratio"]}, work))  # fmt: skip
    return rows


def time_int8_cell(items: list[dict[str, Any]], timer: Any) -> list[dict[str, Any]]:
    import torch

    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.measure.int8 import Int8Case, Int8Run

    spec = find_gpu(RTX_4090)
    rows = []
    by_nk: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in items:
        by_nk.setdefault((r["n"], r["k"]), []).append(r)
    for (n, k), olds in by_nk.items():
        for old in olds:

            def work(m: int, n: int, k: int) -> dict[str, Any]:
                run = Int8Run(Int8Case(m, n, k))
                t = timer.compare(
                    {"triton": run.run("triton", spec=spec), "torch": run.run("torch")}, slots=run.slots
                )
                return {"ok": run.agree("triton", spec=spec), "triton_us": t["triton"].us, "torch_us": t["torch"].us,
                        "ratio": t["torch"].us / t["triton"].us, "spread": max(x.spread for x in t.values())}  # fmt: skip

            rows.append(
                guarded({"n": n, "k": k, "m": old["m"], "old_ratio": old["ratio"]}, work, old["m"], n, k)
            )
        torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------ report


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    from sglang_consumer_gpu.measure.common import geomean

    out: dict[str, Any] = {}
    for area in ("moe", "attention", "int8"):
        rows = doc["correctness"].get(area, [])
        out[f"{area}_correct"] = f"{sum(bool(r.get('ok')) for r in rows)}/{len(rows)}"
    cells = doc["bench"]
    moe = [r for r in cells.get("moe_cell", []) if "ratio" in r]
    out["moe_cell"] = {f"M={r['M']}": f"{r['ratio']:.3f} (H100 {r['old_ratio']:.3f})" for r in moe}
    att = [r for r in cells.get("attention", []) if "ratio" in r]
    if att:
        # Rows where the plugin keeps SGLang's tile are 1.0 by definition; the earlier geomean is over all 20.
        total = len([r for r in load("attention/bench_attention.json")["rows"] if r["is_plugin"]])
        ones = total - len(att) if doc["quick"] else 0
        out["attention_geomean"] = geomean([r["ratio"] for r in att] + [1.0] * ones)
        out["attention_geomean_h100"] = load("attention/bench_attention.json")["plugin_geomean_ratio"]
        out["attention_rows_timed"] = len(att)
    i8 = [r for r in cells.get("int8", []) if "ratio" in r]
    if i8:
        out["int8_geomean"] = geomean([r["ratio"] for r in i8])
        out["int8_geomean_h100_same_points"] = geomean([r["old_ratio"] for r in i8])
        out["int8_points"] = len(i8)
    return out


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (
        ("moe_cell", "M", "fused MoE Qwen3-30B-A3B bf16: default / heuristic", True),
        ("attention", "row", "attention: SGLang sm_89 tile / plugin tile", False),
        ("int8", "m", "int8: (_int_mm + epilogue) / Triton", True),
    )
    for ax, (key, x, title, logx) in zip(axes, panels, strict=True):
        rows = [r for r in doc["bench"].get(key, []) if "ratio" in r]
        if not rows:
            ax.set_title(f"{title}: not run", fontsize=9)
            continue
        xs = [r[x] for r in rows] if logx else list(range(len(rows)))
        ax.scatter(xs, [r["old_ratio"] for r in rows], marker="s", label="earlier run (H100)", alpha=0.6)
        ax.scatter(
            xs,
            [r["ratio"] for r in rows],
            marker="o",
            label=f"engine ({doc['environment']['device']})",
            alpha=0.6,
        )
        ax.axhline(1.0, color="k", lw=0.8)
        if logx:
            ax.set_xscale("log", base=2)
            ax.set_xlabel(x)
        else:
            ax.set_xticks(xs, [r["row"] for r in rows], rotation=70, fontsize=6)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("speed-up (x)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write(doc: dict[str, Any], out: Path) -> None:
    tmp = out / "engine_check.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, out / "engine_check.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--quick", action="store_true", help="subsets: about a minute on 16 cores")
    ap.add_argument("--workers", type=int, default=None, help="compile processes (default: cores - 1)")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting new sections after this long")
    ap.add_argument("--plot", type=Path, help="only draw the PNG for an existing engine_check.json (no GPU)")
    a = ap.parse_args()
    if a.plot:
        plot(json.loads(a.plot.read_text()), a.plot.with_suffix(".png"))
        return 0
    t0 = time.time()
    budget = a.budget_s or (90.0 if a.quick else 240.0)
    a.out.mkdir(parents=True, exist_ok=True)

    from sglang_consumer_gpu.measure.common import environment
    from sglang_consumer_gpu.measure.compile import describe, precompile
    from sglang_consumer_gpu.measure.int8 import sgl_kernel_available
    from sglang_consumer_gpu.measure.timer import Timer

    plan = {"moe_checks": moe_checks(a.quick), "moe_cell": moe_cell(a.quick),
            "attention_checks": attention_checks(a.quick), "attention_cell": attention_cell(a.quick),
            "int8_checks": int8_checks(a.quick), "int8_cell": int8_cell(a.quick)}  # fmt: skip
    jobs = jobs_for(plan)
    paths = prime_sglang_paths()
    compiled = precompile(jobs, a.workers, deadline=t0 + 0.5 * budget)
    sgl_ok, sgl_why = sgl_kernel_available()
    doc: dict[str, Any] = {"environment": environment(), "quick": a.quick, "sgl_kernel_int8": sgl_why, "paths": paths,
                           "compile": {**describe(compiled), "seconds": time.time() - t0},
                           "correctness": {}, "bench": {}, "not_reached": []}  # fmt: skip
    print(f"compiled {len(compiled)} variants in {time.time() - t0:.0f} s "
          f"({doc['compile']['failed']} failed, {doc['compile']['late']} late)", flush=True)  # fmt: skip
    timer = Timer()
    sections: list[tuple[str, str, Callable[[], list[dict[str, Any]]]]] = [
        ("correctness", "moe", lambda: run_moe_checks(plan["moe_checks"])),
        ("correctness", "attention", lambda: run_attention_checks(plan["attention_checks"])),
        ("correctness", "int8", lambda: run_int8_checks(plan["int8_checks"], sgl_ok)),
        ("bench", "moe_cell", lambda: time_moe_cell(plan["moe_cell"], timer)),
        ("bench", "attention", lambda: time_attention_cell(plan["attention_cell"], timer)),
        ("bench", "int8", lambda: time_int8_cell(plan["int8_cell"], timer)),
    ]
    for kind, area, section in sections:
        if time.time() - t0 > budget:
            doc["not_reached"].append(f"{kind}:{area}")
            continue
        s0 = time.time()
        doc[kind][area] = section()
        print(f"{kind} {area}: {len(doc[kind][area])} rows in {time.time() - s0:.0f} s", flush=True)
        write(doc, a.out)
    doc["warm_up_s"] = timer.warmed_s
    doc["summary"] = summarize(doc)
    doc["wall_s"] = time.time() - t0
    write(doc, a.out)
    try:
        plot(doc, a.out / "engine_check.png")
    except Exception as exc:  # the JSON is the result
        print(f"plot failed: {exc}")
    print(json.dumps(doc["summary"], indent=1))
    failed = [r for rows in doc["correctness"].values() for r in rows if not r.get("ok")]
    for r in failed[:20]:
        print("FAIL", json.dumps({k: v for k, v in r.items() if k != "trace"})[:400])
    return 0 if not failed and not doc["not_reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
