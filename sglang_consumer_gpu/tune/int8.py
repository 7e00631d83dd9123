"""Tuning the Triton int8 GEMM's dispatch table inside the sm_89/sm_120-feasible tile space.

:func:`tune` (on a GPU: the device machine's H100, whatever Triton it has)

1. re-checks every candidate tile with the compile-only oracle for sm_86, sm_89 and sm_120
   under this Triton (shared memory differs between Triton versions) and drops any that does
   not fit 101,376 bytes;
2. times the survivors with the measurement engine's timer (CUDA graphs, weights rotated past
   L2, all tiles of a point interleaved) for every (N, K) of the model layers
   (``sglang_consumer_gpu.measure.int8.MODEL_LAYERS``) at the top of each M bucket;
3. writes everything to one JSON document.

:func:`derive` (no GPU) turns that document into the dispatch table the plugin ships
(``sglang_consumer_gpu/int8/dispatch_table.json``, :func:`write_table`): per M bucket the tile
with the best geometric-mean slowdown over all shapes becomes the default, and a shape gets its
own entry where its best tile is >= 5% faster than that. These are H100 timings of tiles proven
to fit an RTX 4090/5090: the best tile on the H100 is not necessarily the best on those GPUs,
but every tile in the table is one they can launch. ``scripts/tune_int8.py`` is the command line.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.int8.tiles import CANDIDATES, M_BUCKETS, TABLE_FILE, Tile
from sglang_consumer_gpu.measure.int8 import unique_nk
from sglang_consumer_gpu.measure.report import write_json

#: Where the plugin reads its dispatch table from (package data).
TABLE_PATH = Path(__file__).resolve().parents[1] / "int8" / TABLE_FILE

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


def _oracle_one(job: tuple[Tile, int]) -> dict[str, Any]:
    from sglang_consumer_gpu.hardware.spec import GpuSpec
    from sglang_consumer_gpu.oracle.kernels.int8 import tile_resources

    tile, arch = job
    spec = GpuSpec.for_arch(*divmod(arch, 10))
    try:
        r = tile_resources(spec, tile)
        return {
            "tile": tile.to_list(),
            "arch": spec.arch_name,
            "shared": r.shared,
            "limit": r.limit,
            "fits": r.fits,
        }
    except Exception as exc:
        return {"tile": tile.to_list(), "arch": spec.arch_name, "error": f"{type(exc).__name__}: {exc}"}


def oracle_recheck(workers: int | None) -> list[dict[str, Any]]:
    """Compile-only shared memory of every candidate for each of :data:`ARCHS`, under this Triton."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from sglang_consumer_gpu.measure.compile import default_workers

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers or default_workers(), mp_context=ctx) as pool:
        return list(pool.map(_oracle_one, [(t, a) for t in CANDIDATES for a in ARCHS]))


def tune(
    out_path: Path, workers: int | None, m_buckets: tuple[int, ...], max_seconds: float
) -> dict[str, Any]:
    """Time every oracle-feasible tile at the top of each M bucket for every model layer (N, K) on
    the live GPU and write the result to ``out_path`` (JSON); stops starting new shapes after
    ``max_seconds``."""
    import torch
    import triton

    from sglang_consumer_gpu.measure.common import environment
    from sglang_consumer_gpu.measure.compile import describe, precompile
    from sglang_consumer_gpu.measure.int8 import Int8Case, Int8Job, Int8Run
    from sglang_consumer_gpu.measure.timer import Timer

    t0 = time.time()
    oracle = oracle_recheck(workers)
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
    jobs = {(n, k, b, t): Int8Job(Int8Case(b, n, k), tuple(t.to_list())) for n, k in shapes for b in m_buckets
            for t in tiles_for_bucket(b, feasible)}  # fmt: skip
    compiled = precompile(list(jobs.values()), workers)
    print(f"precompiled {len(compiled)} cases ({time.time() - t0:.0f}s)", flush=True)

    timer = Timer(rounds=3, sample_us=1000.0)
    timings: list[dict[str, Any]] = []
    complete = True
    for n, k in shapes:
        if time.time() - t0 > max_seconds:
            complete = False
            print(f"time limit reached; {len(timings)} timings kept", flush=True)
            break
        for bucket in m_buckets:
            run = Int8Run(Int8Case(bucket, n, k))
            tiles = [
                t for t in tiles_for_bucket(bucket, feasible) if not compiled.get(jobs[(n, k, bucket, t)].key)
            ]
            res = timer.compare({t: run.run("triton", tile=t) for t in tiles}, run.slots)
            timings += [
                {"n": n, "k": k, "m": bucket, "tile": t.to_list(), "us": v.us} for t, v in res.items()
            ]
            del run
        torch.cuda.empty_cache()
        print(f"N={n} K={k} done ({time.time() - t0:.0f}s)", flush=True)

    doc = {**environment(), "oracle": oracle, "compile": describe(compiled), "timings": timings,
           "complete": complete, "seconds": time.time() - t0}  # fmt: skip
    write_json(out_path, doc)
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


def write_table(doc: dict[str, Any], path: Path = TABLE_PATH) -> dict[str, Any]:
    """Derive the dispatch table from a tuning document and write it (atomically) to ``path``."""
    table = derive(doc)
    write_json(path, table)
    return table
