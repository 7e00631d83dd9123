"""Benchmark SGLang's own fused-MoE kernel: RTX-4090 default vs plugin heuristic vs sm_89-feasible best.

A command line over :mod:`sglang_consumer_gpu.measure.moe_sweep` (the method is described
there): ``plan`` here (CPU, compile-only oracle), ``run`` / ``confirm`` on the device, ``report``
anywhere. The device machine has no SGLang of its own: run with the carried one
(scripts/device/README.md).

    PYTHONPATH=$PWD:$PYTHONPATH python scripts/bench_moe.py plan --out tests/fixtures/results/cpu_moe_bench_plan.json
    PYTHONPATH=$PWD:$PYTHONPATH python scripts/bench_moe.py run --plan tests/fixtures/results/cpu_moe_bench_plan.json --out $OUT      # device
    PYTHONPATH=$PWD:$PYTHONPATH python scripts/bench_moe.py confirm --plan results/cpu/moe/moe_bench_v2_plan.json \\
        --previous tests/fixtures/results/h100_moe_bench.json,results/h100/moe/moe_bench_confirm.json --out $OUT   # device
    PYTHONPATH=$PWD:$PYTHONPATH python scripts/bench_moe.py report tests/fixtures/results/h100_moe_bench.json --plot moe_bench.png

``--shapes NAME[,NAME]`` from :data:`SHAPES`, or ``calibration`` (default), ``heldout``, ``fresh``.
``run`` times every proven config at every point; ``confirm`` times only SGLang's default, the
current heuristic, the best and five fastest configs of earlier runs (and, for M <= 64, every
BLOCK_SIZE_M <= 32 config), without a GROUP_SIZE_M refinement.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
from scripts.device.sglang_env import ensure_sglang  # noqa: E402

ensure_sglang()  # an installed SGLang, else the device machine's carry of its kernel files

from sglang_consumer_gpu.families.moe import REFERENCE, sweep_points  # noqa: E402
from sglang_consumer_gpu.measure import moe_sweep as sweep  # noqa: E402
from sglang_consumer_gpu.measure.moe import config_key, launch_config, parse_config_key  # noqa: E402

DTYPES = (None, "fp8_w8a8")
#: E experts, N = per-GPU intermediate size (the ``N=`` of SGLang's config file names), K =
#: hidden size, top-k, ``dtypes`` (None = bf16) to time; values from the models' config.json.
#: The first three calibrated the heuristic; the rest are held out from it (gpt-oss-20b: bf16
#: weights, expert biases omitted; Mixtral-8x22B at TP4: 16384 / 4; Qwen1.5-MoE: routed experts).
SHAPES = {
    "Qwen3-30B-A3B": {"E": 128, "N": 768, "K": 2048, "topk": 8, "dtypes": DTYPES},
    "DeepSeek-V2-Lite": {"E": 64, "N": 1408, "K": 2048, "topk": 6, "dtypes": DTYPES},
    "Mixtral-8x7B-TP2": {"E": 8, "N": 7168, "K": 4096, "topk": 2, "dtypes": DTYPES},
    "Qwen3-235B-A22B-TP4": {"E": 128, "N": 384, "K": 4096, "topk": 8, "dtypes": DTYPES},
    "GLM-4.5-Air-TP2": {"E": 128, "N": 704, "K": 4096, "topk": 8, "dtypes": DTYPES},
    "gpt-oss-20b": {"E": 32, "N": 2880, "K": 2880, "topk": 4, "dtypes": (None,)},
    "Qwen3-Next-80B-A3B": {"E": 512, "N": 512, "K": 2048, "topk": 10, "dtypes": DTYPES},
    "Mixtral-8x22B-TP4": {"E": 8, "N": 4096, "K": 6144, "topk": 2, "dtypes": DTYPES},
    "Qwen1.5-MoE-A2.7B": {"E": 60, "N": 1408, "K": 2048, "topk": 4, "dtypes": DTYPES},
}
GROUPS = {
    "calibration": ("Qwen3-30B-A3B", "DeepSeek-V2-Lite", "Mixtral-8x7B-TP2"),
    "heldout": ("Qwen3-235B-A22B-TP4", "GLM-4.5-Air-TP2", "gpt-oss-20b"),
    "fresh": ("Qwen3-Next-80B-A3B", "Mixtral-8x22B-TP4", "Qwen1.5-MoE-A2.7B"),
}
GRID = (1, 4, 16, 64, 256, 1024, 4096)
GPU = "NVIDIA GeForce RTX 4090"


def select_shapes(names: str | None) -> list[str]:
    wanted: list[str] = []
    for name in (names or "calibration").split(","):
        name = name.strip()
        if name in GROUPS:
            wanted += GROUPS[name]
        elif name in SHAPES:
            wanted.append(name)
        elif name:
            raise SystemExit(f"unknown shape {name!r}; choose from: {', '.join([*SHAPES, *GROUPS])}")
    return list(dict.fromkeys(wanted))


def plan(out: Path, jobs: int, shapes: str | None, prove_per_shape: bool) -> None:
    """Proven space per (shape, dtype) -- once per dtype on the Qwen3-30B-A3B shape unless
    ``prove_per_shape`` (shared memory follows the tile, dtype and pipeline; ``even_Ks`` and
    ``top_k`` follow the shape, so per shape is the stricter proof) -- and the points."""
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.shape import MoeShape
    from sglang_consumer_gpu.versions import installed_version

    spec = find_gpu(GPU)
    doc: dict[str, Any] = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": spec.to_dict(),
                           "triton_plan": installed_version("triton"), "sglang": installed_version("sglang"),
                           "grid": list(GRID), "space_rule": sweep.__doc__.split("1. ")[1].split("2. ")[0].strip(),
                           "prove_per_shape": prove_per_shape, "cases": []}  # fmt: skip
    proven: dict[Any, tuple[list[dict[str, Any]], int]] = {}
    for name in select_shapes(shapes):
        s = SHAPES[name]
        for dtype in s["dtypes"]:
            key = (name, dtype) if prove_per_shape else dtype
            ref = (REFERENCE.E, REFERENCE.N, REFERENCE.K, REFERENCE.topk)
            dims = (s["E"], s["N"], s["K"], s["topk"]) if prove_per_shape else ref
            if key not in proven:
                proven[key] = sweep.prove_space(spec, MoeShape(*dims, dtype), jobs)
            space, n = proven[key]
            shape = MoeShape(s["E"], s["N"], s["K"], s["topk"], dtype)
            doc["cases"].append({"name": name, **{k: s[k] for k in ("E", "N", "K", "topk")}, "dtype": dtype,
                                 "space": space, "candidates": n, "points": sweep_points(spec, shape, GRID)})  # fmt: skip
            print(f"{name} {dtype or 'bf16'}: {len(space)} of {n} candidates fit sm_89", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")


def merge(out: Path, plans: list[Path], order: str | None) -> None:
    """One plan from several (each case keeps its space and SGLang default), heuristic refreshed."""
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.heuristic import heuristic_config

    spec = find_gpu(GPU)
    docs = [json.loads(p.read_text()) for p in plans]
    merged = {k: v for k, v in docs[0].items() if k != "cases"}
    merged.update(created=time.strftime("%Y-%m-%d %H:%M:%S"), merged_from=[p.name for p in plans], cases=[])
    for p, d in zip(plans, docs, strict=True):
        for c in d["cases"]:
            for pt in c["points"]:
                pt["heuristic"] = heuristic_config(pt["M"], sweep.case_shape(c), spec)
            merged["cases"].append(
                {**c, "plan_file": p.name, "prove_per_shape": d.get("prove_per_shape", False)}
            )
    if order:  # "NAME|DTYPE,..." first, in this order
        rank = {k: i for i, k in enumerate(order.split(","))}
        merged["cases"].sort(key=lambda c: rank.get(f"{c['name']}|{c['dtype'] or 'bf16'}", len(rank)))
    out.write_text(json.dumps(merged, indent=1))
    print(f"wrote {out}: {len(merged['cases'])} cases")


def confirm_candidates(previous: list[dict[str, Any]]) -> sweep.Candidates:
    """The best and five fastest configs every previous run timed at the point, and at M <= 64
    every BLOCK_SIZE_M <= 32 config of the space (where an earlier early exit skipped some)."""

    def candidates(ci: int, case: dict[str, Any], point: dict[str, Any]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for prev in previous:
            for pc in prev["cases"]:
                pp = next((x for x in pc["points"] if x["M"] == point["M"]), None)
                if pc["name"] != case["name"] or pc["dtype"] != case["dtype"] or pp is None:
                    continue
                for k in [
                    *sorted(pp["space_us"], key=pp["space_us"].get)[:5],
                    config_key(pp["best"]["config"]),
                ]:
                    out[k] = parse_config_key(k)
        if point["M"] <= 64:
            out.update(
                {
                    config_key(launch_config(c)): launch_config(c)
                    for c in case["space"]
                    if c["BLOCK_SIZE_M"] <= 32
                }
            )
        return out

    return candidates


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep.summarize(results)
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.6), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        ax.plot(r["M"], r["heur_vs_best"], "o-", label="plugin heuristic")
        ax.plot(r["M"], r["default_vs_best"], "s--", label="SGLang default (RTX 4090)")
        ax.axhline(0.95, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{r['case']} {r['dtype']}", fontsize=9)
        ax.set_xlabel("batch size M")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("speed / sm_89-feasible best")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"SGLang fused MoE, sm_89-feasible configs timed on {results.get('device')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def device_run(a: argparse.Namespace, candidates: sweep.Candidates, refine: bool, **extra: Any) -> None:
    from sglang_consumer_gpu.hardware import find_gpu

    a.out.mkdir(parents=True, exist_ok=True)
    doc = json.loads(a.plan.read_text())
    doc["plan_file"] = a.plan.name
    ids = [i for i, c in enumerate(doc["cases"]) if sweep.selected(c["name"], a.only, c["dtype"])]

    def dump(results: dict[str, Any]) -> None:
        tmp = a.out / f"{a.stem}.json.tmp"
        tmp.write_text(json.dumps({**results, **extra}, indent=1))
        os.replace(tmp, a.out / f"{a.stem}.json")

    results = sweep.run_sweep(doc, ids, candidates, workers=a.workers, budget_s=a.budget_s,
                              warm_budget_s=a.warm_budget_s, small_m_full=getattr(a, "small_m_full", False),
                              refine=refine, on_case=dump)  # fmt: skip
    results["oracle_triton_device"] = sweep.oracle_recheck(results, find_gpu(GPU), a.workers or 8)
    dump(results)
    print(sweep.report_table(results))
    try:
        plot(results, a.out / f"{a.stem}.png")
    except Exception as exc:  # the JSON is the result
        print(f"plot failed: {exc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--out", type=Path, default=REPO / "results" / "cpu" / "moe" / "moe_bench_plan.json")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--shapes", help=f"NAME[,NAME] from {', '.join(SHAPES)}, or {', '.join(GROUPS)}")
    p.add_argument("--prove-per-shape", action="store_true", help="prove the space on each shape (stricter)")
    mg = sub.add_parser("merge", help="one plan from several, heuristic refreshed")
    mg.add_argument("--out", type=Path, required=True)
    mg.add_argument("plans", type=Path, nargs="+")
    mg.add_argument("--order", help="NAME|DTYPE,... cases to put first (stable otherwise)")
    for name, stem in (("run", "moe_bench"), ("confirm", "moe_bench_confirm")):
        r = sub.add_parser(name)
        r.add_argument("--plan", type=Path, default=REPO / "tests" / "fixtures" / "results" / "cpu_moe_bench_plan.json")
        r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "results" / "h100" / "moe")))
        r.add_argument("--workers", type=int, default=None, help="compile processes (default: cores - 1)")
        r.add_argument("--only", help="comma-separated substrings of case names, each optionally |DTYPE")
        r.add_argument("--stem", default=stem, help="output file names: STEM.json, STEM.png")
        r.add_argument("--budget-s", type=float, help="leave out points not reached by then")
        r.add_argument("--warm-budget-s", type=float, help="leave out configs not compiled by then")
        if name == "run":
            r.add_argument(
                "--small-m-full", action="store_true", help="no early exit for BLOCK_M <= 32 at M <= 64"
            )
        else:
            r.add_argument("--previous", default=str(REPO / "tests" / "fixtures" / "results" / "h100_moe_bench.json"),
                           help="comma-separated result files whose top configs are re-timed")  # fmt: skip
    rep = sub.add_parser("report")
    rep.add_argument("results", type=Path)
    rep.add_argument("--plot", type=Path)
    a = ap.parse_args()
    if a.cmd == "plan":
        plan(a.out, a.jobs, a.shapes, a.prove_per_shape)
    elif a.cmd == "merge":
        merge(a.out, a.plans, a.order)
    elif a.cmd == "run":
        device_run(a, sweep.space_candidates, refine=True)
    elif a.cmd == "confirm":
        previous = [Path(p) for p in a.previous.split(",") if p]
        device_run(a, confirm_candidates([json.loads(p.read_text()) for p in previous]), refine=False,
                   mode="confirm", previous=[p.name for p in previous])  # fmt: skip
    else:
        res = json.loads(a.results.read_text())
        print(sweep.report_table(res))
        if a.plot:
            plot(res, a.plot)


if __name__ == "__main__":
    main()
