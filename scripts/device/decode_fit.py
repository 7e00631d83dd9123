"""Device data for fitting the heuristic's decode end (issue 12): every small tile, interleaved.

The benchmark sweeps time each config once and re-time only the five fastest interleaved; at
M <= 8 a single timing moves by 5-15 % on the H200 (DeepSeek-V3 TP8 bf16 M = 1, 16x32x128 s4:
40.8 us in the sweep, 35.5 us re-timed), which is as large as the differences a decode rule has
to decide. Here every candidate of a point is timed in one interleaved comparison
(:meth:`~sglang_consumer_gpu.measure.timer.Timer.compare`, ``--rounds`` rounds, the median per
config): BLOCK_SIZE_M 16 with BLOCK_SIZE_N {32, 64, 128} x BLOCK_SIZE_K {64, 128, 256} at the
three deepest pipelines that fit an RTX 4090 (4 warps, GROUP_SIZE_M 1: decode grids have one M
block per expert), at M = 64 also BLOCK_SIZE_M 32 (two deepest), plus SGLang's RTX-4090 default
and the heuristic as they answer now. Both GEMMs of the layer, under CUDA graphs, SGLang's own
kernel, compiled in parallel first (:func:`~sglang_consumer_gpu.measure.compile.precompile`).

The shapes (:data:`FIT_SHAPES`) are the ones rules may be fitted on: held-out rounds 1 and 2 of
``tune_check.py`` (already spent as held-out) and the H100 benchmark rounds' shapes. Shapes kept
for validation must not be added here.

Writes ``decode_fit.json`` (the sweep format of ``results/moe_bench*.json``, so
``scripts/moe_predict_offline.py`` reads it; ``space_us`` and ``finalists_us`` are the same
interleaved times) after every case, and ``decode_fit.png``.

    eval "$(python3 scripts/device/install_sglang.py)" || exit 1     # carry .carry/sglang-0.5.17
    PYTHONUNBUFFERED=1 timeout 560 PYTHONPATH=$PWD:$PYTHONPATH python3 scripts/device/decode_fit.py --out $OUT --budget-s 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_MININTERVAL", "15")

from scripts.device.tune_check import HELDOUT_SETS, RTX_4090, log, plan_case
from sglang_consumer_gpu.families.moe import REFERENCE, REFERENCE_NAME

#: (E, N, K, topk) per shape: tune_check's rounds 1 and 2, then the H100 rounds' shapes
#: (results/h100/moe/moe_bench_confirm.json, _heldout.json, _v2_fresh.json).
FIT_SHAPES = {
    **HELDOUT_SETS["round1"],
    **HELDOUT_SETS["round2"],
    REFERENCE_NAME: (REFERENCE.E, REFERENCE.N, REFERENCE.K, REFERENCE.topk),
    "Qwen3-235B-A22B-TP4": (128, 384, 4096, 8),
    "GLM-4.5-Air-TP2": (128, 704, 4096, 8),
    "DeepSeek-V2-Lite": (64, 1408, 2048, 6),
    "Mixtral-8x7B-TP2": (8, 7168, 4096, 2),
    "gpt-oss-20b": (32, 2880, 2880, 4),
    "Qwen3-Next-80B-A3B": (512, 512, 2048, 10),
    "Mixtral-8x22B-TP4": (8, 4096, 6144, 2),
    "Qwen1.5-MoE-A2.7B": (60, 1408, 2048, 4),
}
GRID = (1, 2, 4, 8, 16, 64)
DTYPES = (None, "fp8_w8a8")


def candidates(spec: Any, dtype: str | None, M: int) -> list[dict[str, int]]:
    """The small tiles of the module docstring: SGLang's space (:func:`moe_sweep.search_space`)
    at BLOCK_SIZE_M 16 (32 too at M >= 64) and BLOCK_SIZE_N <= 128, what fits ``spec`` by the
    analytic bound, per tile the three (at BLOCK_SIZE_M 32 two) deepest pipelines."""
    from sglang_consumer_gpu.measure.moe_sweep import deepest, search_space
    from sglang_consumer_gpu.moe.smem import fits

    small = [c for c in search_space() if c["BLOCK_SIZE_N"] <= 128 and fits(c, dtype, spec)]
    out = deepest([c for c in small if c["BLOCK_SIZE_M"] == 16], 3)
    if M >= 64:
        out += deepest([c for c in small if c["BLOCK_SIZE_M"] == 32], 2)
    return out


def plan(shapes: dict[str, tuple[int, int, int, int]]) -> list[dict[str, Any]]:
    from sglang_consumer_gpu.hardware import find_gpu

    spec = find_gpu(RTX_4090)
    cases = []
    for name, dims in shapes.items():
        for dtype in DTYPES:
            case = plan_case(name, dims, dtype, GRID)
            for p in case["points"]:
                p["candidates"] = candidates(spec, dtype, p["M"])
            cases.append(case)
    return cases


def measure(cases: list[dict[str, Any]], out: Path, budget_s: float, workers: int | None, rounds: int) -> dict:
    import torch

    from sglang_consumer_gpu.measure.common import environment
    from sglang_consumer_gpu.measure.compile import describe, precompile
    from sglang_consumer_gpu.measure.moe import MoeCase, MoeJob, MoeLayer, config_key, launch_config
    from sglang_consumer_gpu.measure.moe_sweep import case_shape
    from sglang_consumer_gpu.measure.timer import Timer
    from sglang_consumer_gpu.tune.state import write_atomic

    t0 = time.time()
    named = ("default", "heuristic")
    jobs, first = [], []
    for c in cases:
        for p in c["points"]:
            case = MoeCase(case_shape(c), p["M"])
            jobs += [MoeJob.of(case, cfg) for cfg in p["candidates"]]
            for n in named:
                first.append(MoeJob.of(case, p[n]).key)
                jobs.append(MoeJob.of(case, p[n]))
    log(f"compiling {len(jobs)} jobs")
    compiled = precompile(jobs, workers, deadline=t0 + budget_s * 0.5, first=first)
    bad = {k for k, why in compiled.items() if why}
    doc: dict[str, Any] = {**environment(), "method": __doc__.split("\n\n")[1], "rounds": rounds,
                           "compile": describe(compiled), "warm_s": time.time() - t0,
                           "points_not_reached": [], "cases": []}  # fmt: skip
    log(f"compiled in {doc['warm_s']:.0f} s ({len(bad)} failed or late)")
    timer = Timer(rounds=rounds)
    for c in cases:
        shape = case_shape(c)
        rec = {k: c[k] for k in ("name", "E", "N", "K", "topk", "dtype")} | {"points": []}
        for p in c["points"]:
            if time.time() - t0 > budget_s:
                doc["points_not_reached"].append(f"{c['name']}|{c['dtype'] or 'bf16'}|{p['M']}")
                continue
            case = MoeCase(shape, p["M"])
            cfgs = {config_key(launch_config(cfg)): launch_config(cfg) for cfg in [*p["candidates"], p["default"],
                    p["heuristic"]] if MoeJob.of(case, cfg).key not in bad}  # fmt: skip
            layer = MoeLayer(case)
            t = timer.compare({k: layer.gemms(cfg) for k, cfg in cfgs.items()}, len(layer.slots))
            us = {k: v.us for k, v in t.items()}
            best = min(us, key=us.get)
            pr: dict[str, Any] = {"M": p["M"], "space_us": us, "finalists_us": us,
                                  "finalists_spread": max(v.spread for v in t.values())}  # fmt: skip
            for n, k in ((n, config_key(launch_config(p[n]))) for n in named):
                pr[n] = {"config": launch_config(p[n]), "us": us.get(k)}
            pr["best"] = {"config": cfgs[best], "us": us[best]}
            rec["points"].append(pr)
            log(f"{c['name']:>22} {c['dtype'] or 'bf16':>8} M={p['M']:>3}: {len(us)} configs, best {best} "
                f"{us[best]:.1f} us, default x{us[best] / (pr['default']['us'] or float('nan')):.3f}")  # fmt: skip
            del layer
            torch.cuda.empty_cache()
        doc["cases"].append(rec)
        doc["wall_s"] = time.time() - t0
        write_atomic(out / "decode_fit.json", json.dumps(doc, indent=1))
    return doc


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), sharey=True)
    for ax, wide in zip(axes, (True, False), strict=True):
        for c in doc["cases"]:
            if (c["dtype"] is None) != wide:
                continue
            pts = [p for p in c["points"] if p["default"]["us"] and p["heuristic"]["us"]]
            line = ax.plot([p["M"] for p in pts], [p["best"]["us"] / p["heuristic"]["us"] for p in pts], "o-",
                           lw=0.8, label=c["name"])[0]  # fmt: skip
            ax.plot([p["M"] for p in pts], [p["best"]["us"] / p["default"]["us"] for p in pts], "^:",
                    lw=0.6, mfc="none", color=line.get_color())  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.axhline(0.97, color="grey", ls=":", lw=0.8)
        ax.set_title(f"{'bf16' if wide else 'fp8_w8a8'}: best / heuristic (o), best / SGLang default (^)", fontsize=9)
        ax.set_xlabel("batch size M")
        ax.legend(fontsize=6)
    fig.suptitle(f"all small tiles interleaved on {doc.get('device')}; configs fit an RTX 4090", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--budget-s", type=float, default=500.0, help="wall clock for compiling and timing")
    ap.add_argument("--workers", type=int, default=None, help="compile processes (default: cores - 1)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per point")
    ap.add_argument("--plan-only", action="store_true", help="print the plan's size and exit (no GPU)")
    a = ap.parse_args()
    cases = plan(FIT_SHAPES)
    n = sum(len(p["candidates"]) for c in cases for p in c["points"])
    log(f"{len(cases)} cases, {sum(len(c['points']) for c in cases)} points, {n} candidate timings")
    if a.plan_only:
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    doc = measure(cases, a.out, a.budget_s, a.workers, a.rounds)
    try:
        plot(doc, a.out / "decode_fit.png")
    except Exception as exc:  # the JSON is the result
        log(f"plot failed: {type(exc).__name__}: {exc}")
    return 0 if not doc["points_not_reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
