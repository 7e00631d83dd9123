#!/usr/bin/env python
"""Tune the Triton int8 GEMM's dispatch table inside the sm_89/sm_120-feasible tile space.

On the device machine (H100, whatever Triton it has):

1. re-checks every candidate tile with the compile-only oracle for sm_86,
   sm_89 and sm_120 under the device's Triton (shared memory differs between
   Triton versions) and drops any that does not fit 101,376 bytes;
2. times the survivors (CUDA-graph GPU time, weights rotated past L2) for every
   (N, K) of the model layers in ``sglang_consumer_gpu.int8.shapes`` at the top
   of each M bucket;
3. writes everything to ``--out`` (JSON).

Here (no GPU): ``--derive TUNE.json`` turns a tuning result into
``sglang_consumer_gpu/int8/dispatch_table.json``: per M bucket the tile with
the best geometric-mean slowdown over all shapes becomes the default, and a
shape gets its own entry where its best tile is >= 5% faster than that.

These are H100 timings of tiles proven to fit an RTX 4090/5090: the best tile
on the H100 is not necessarily the best on those GPUs (a tuning run on the
target GPU would say), but every tile in the table is one they can launch.

    PYTHONPATH=. python scripts/tune_int8.py --out results/int8_tune.json
    python scripts/tune_int8.py --derive results/int8_tune.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sglang_consumer_gpu.int8.shapes import unique_nk  # noqa: E402
from sglang_consumer_gpu.int8.tiles import CANDIDATES, M_BUCKETS, TABLE_FILE, Tile  # noqa: E402

ARCHS = (86, 89, 120)
#: A shape gets its own table entry only when its best tile beats the bucket default by this much.
OVERRIDE_GAIN = 0.05


def tiles_for_bucket(bucket: int, tiles: list[Tile]) -> list[Tile]:
    """Candidates worth timing for an M bucket: row tiles not far larger than
    M for small M; no 16/32-row tiles for large M."""
    if bucket <= 64:
        return [t for t in tiles if t.block_m <= max(16, bucket)]
    if bucket >= 512:
        return [t for t in tiles if t.block_m >= 64]
    return list(tiles)


def _triton_call(op: Any, a: Any, weights: list[Any], sa: Any, sb: Any, tile: Tile, i: int) -> Any:
    import torch

    return op(a, weights[i].t(), sa, sb, torch.bfloat16, None, tile=tile)


def tune(
    out_path: Path, workers: int | None, m_buckets: tuple[int, ...], max_seconds: float
) -> dict[str, Any]:
    import torch
    import triton

    from sglang_consumer_gpu.int8 import devtools
    from sglang_consumer_gpu.int8.ops import int8_scaled_mm

    t0 = time.time()
    oracle = devtools.oracle_shared(CANDIDATES, ARCHS, workers)
    # A tile is dropped when the oracle shows it does not fit; a compile that
    # failed outright (e.g. an oracle API change in this Triton) is reported,
    # and the tile is kept only if Triton 3.8's oracle (the CI tests) proves it.
    bad = {tuple(r["tile"]) for r in oracle if r.get("fits") is False}
    oracle_errors = [r for r in oracle if "error" in r]
    feasible = [t for t in CANDIDATES if tuple(t.to_list()) not in bad]
    print(
        f"oracle (Triton {triton.__version__}): {len(feasible)}/{len(CANDIDATES)} tiles fit sm_86/89/120, "
        f"{len(oracle_errors)} oracle errors ({time.time() - t0:.0f}s)",
        flush=True,
    )
    if oracle_errors:
        print("first oracle error:", oracle_errors[0], flush=True)

    shapes = unique_nk()
    variants = {devtools.variant_for(t, "bfloat16", False, k) for t in feasible for _, k in shapes}
    errors = {v: e for v, e in devtools.precompile(variants, workers).items() if e}
    print(f"precompiled {len(variants)} variants, {len(errors)} failed ({time.time() - t0:.0f}s)", flush=True)

    dev = torch.device("cuda")
    timings: list[dict[str, Any]] = []
    complete = True
    for n, k in shapes:
        if time.time() - t0 > max_seconds:
            complete = False
            print(f"time limit reached; {len(timings)} timings kept", flush=True)
            break
        copies = devtools.weight_copies(n, k)
        weights, sb = devtools.random_weights(n, k, copies, dev)
        for bucket in m_buckets:
            a, sa = devtools.random_activations(bucket, k, dev)
            for tile in tiles_for_bucket(bucket, feasible):
                if devtools.variant_for(tile, "bfloat16", False, k) in errors:
                    continue

                call = functools.partial(_triton_call, int8_scaled_mm, a, weights, sa, sb, tile)
                us = devtools.graph_time_us(call, copies=copies, budget_us=1000.0, replays=3)
                timings.append({"n": n, "k": k, "m": bucket, "tile": tile.to_list(), "us": us})
        del weights
        torch.cuda.empty_cache()
        print(f"N={n} K={k} done ({time.time() - t0:.0f}s)", flush=True)

    doc = {
        **devtools.environment(),
        "oracle": oracle,
        "compile_errors": devtools.errors_json(errors),
        "timings": timings,
        "complete": complete,
        "seconds": time.time() - t0,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out_path} ({len(timings)} timings, {time.time() - t0:.0f}s)")
    return doc


def derive(doc: dict[str, Any]) -> dict[str, Any]:
    """Build the dispatch-table document from a tuning result."""
    by: dict[int, dict[tuple[int, int], dict[tuple[int, ...], float]]] = {}
    for t in doc["timings"]:
        by.setdefault(t["m"], {}).setdefault((t["n"], t["k"]), {})[tuple(t["tile"])] = t["us"]
    entries: list[dict[str, Any]] = []
    for bucket in M_BUCKETS:
        shapes = by.get(bucket)
        if not shapes:
            raise ValueError(f"tuning result has no timings for M bucket {bucket}")
        common = set.intersection(*(set(v) for v in shapes.values()))

        def slowdown(tile: tuple[int, ...], shapes: dict = shapes) -> float:
            return math.exp(sum(math.log(v[tile] / min(v.values())) for v in shapes.values()) / len(shapes))

        default = min(common, key=slowdown)
        entries.append({"m": bucket, "tile": list(default), "geomean_slowdown": round(slowdown(default), 4)})
        for (n, k), v in sorted(shapes.items()):
            best = min(v, key=v.get)
            if v[best] < (1 - OVERRIDE_GAIN) * v[default]:
                entries.append(
                    {"m": bucket, "n": n, "k": k, "tile": list(best), "gain": round(v[default] / v[best], 3)}
                )
    return {
        "format": 1,
        "about": (
            "Triton int8_scaled_mm tiles: (M bucket, N, K) -> [block_m, block_n, block_k, group_m, num_warps, "
            "num_stages]; an entry without n/k is the bucket default. Derived by scripts/tune_int8.py --derive from "
            f"timings on {doc['device']} (Triton {doc['triton']}, torch {doc['torch']}) of tiles the compile-only "
            "oracle proved fit sm_86/sm_89/sm_120; per-bucket default = best geometric-mean slowdown over the "
            f"shapes, per-shape entries where a tile is >= {OVERRIDE_GAIN:.0%} faster than the default."
        ),
        "tables": {"low_smem": {"archs": list(ARCHS), "smem_limit": 101376, "entries": entries}},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "results" / "int8_tune.json")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--buckets", default=",".join(map(str, M_BUCKETS)))
    p.add_argument("--max-seconds", type=float, default=400.0, help="stop timing new shapes after this long")
    p.add_argument(
        "--derive", type=Path, help="derive the dispatch table from this tuning JSON (no GPU needed)"
    )
    p.add_argument("--table-out", type=Path, default=REPO / "sglang_consumer_gpu" / "int8" / TABLE_FILE)
    args = p.parse_args()
    if args.derive:
        table = derive(json.loads(args.derive.read_text()))
        args.table_out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {args.table_out}: {len(table['tables']['low_smem']['entries'])} entries")
        return 0
    tune(args.out, args.workers, tuple(int(b) for b in args.buckets.split(",")), args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
