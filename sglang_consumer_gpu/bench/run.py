"""Timing the bench points on the live GPU with the engine's one timer; the report after every point.

Per point, the family's point times both choices (``time``: :mod:`~sglang_consumer_gpu.families.
bench_points`) through SGLang's own launchers with the config or tile given explicitly, interleaved
under CUDA graphs on inputs rotated past L2 (:meth:`~sglang_consumer_gpu.measure.timer.Timer.compare`);
the plugin's MoE choice is checked against the float32 reference first. The plugin's patches (the
safety net included) are reverted while timing, so "SGLang alone" is SGLang alone. A point where
both choices are the same is not timed (1.0 by definition); one where SGLang's own choice does not
fit the GPU is not launched: it would fail with ``OutOfResources`` and the bytes it needs are reported.

The JSON document is rewritten atomically after every point, so an interrupted run (Ctrl-C)
leaves a valid partial report (``complete: false``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.bench.points import BenchPoints
from sglang_consumer_gpu.families.bench_points import untimed
from sglang_consumer_gpu.measure.report import write_json

SCHEMA = "sglang-consumer-gpu/bench/1"
Progress = Callable[[int, str], Any]


def document(points: BenchPoints, environment: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """The report before timing: every family's part is a section named after its area."""
    d = points.model
    limit = points.spec.smem_per_block_optin
    doc = {
        "schema": SCHEMA,
        "complete": False,
        "interrupted": False,
        "environment": environment,
        "gpu": points.spec.to_dict(),
        "model": {
            "name": d.name,
            "config_path": d.config_path,
            "architecture": d.architecture,
            **{k: v for part in points.parts for k, v in part.model.items()},
            "attention": {
                "kind": d.attention.kind,
                "q_heads": d.attention.q_heads,
                "kv_heads": d.attention.kv_heads,
                "head_dim": d.attention.head_dim,
            },
        },
        "tp": points.tp,
        "ep": points.ep,
        "activation_dtype": d.activation_dtype,
        "notes": [*notes, *points.notes],
        "timer": {},
        "compile": {},
    }
    for part in points.parts:
        doc[part.area] = [p.row(limit) for p in part.points]
    return doc


def _jobs(points: BenchPoints, doc: dict[str, Any]) -> list[Any]:
    jobs: dict[str, Any] = {}
    for part in points.parts:
        for p, row in zip(part.points, doc[part.area], strict=True):
            if not untimed(row):
                jobs.update((job.key, job) for job in p.jobs(row))
    return list(jobs.values())


def run_bench(
    points: BenchPoints,
    doc: dict[str, Any],
    path: Path,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    timer: Any = None,
) -> dict[str, Any]:
    """Time every pending point of ``doc`` (from :func:`document`), writing ``path`` after each.
    On KeyboardInterrupt the document is written with ``interrupted: true`` and it re-raises."""
    from sglang_consumer_gpu.measure.compile import describe, precompile
    from sglang_consumer_gpu.measure.timer import Timer
    from sglang_consumer_gpu.patching.registry import unpatched

    write_json(path, doc)
    try:
        jobs = _jobs(points, doc)
        if jobs:
            t0 = time.perf_counter()
            bar = progress(len(jobs), "bench: compiling") if progress else None
            error = None
            try:
                compiled = precompile(jobs, workers, on_done=bar.update if bar else None)
            except Exception as exc:  # a worker died: the points compile as they are timed
                compiled, error = {}, f"{type(exc).__name__}: {str(exc)[:200]}"
            finally:
                if bar is not None:
                    bar.close()
            doc["compile"] = {**describe(compiled), "seconds": round(time.perf_counter() - t0, 1)}
            if error:
                doc["compile"]["error"] = error
            write_json(path, doc)
        timer = timer or Timer()
        todo = [
            (p, row) for part in points.parts for p, row in zip(part.points, doc[part.area], strict=True)
            if not untimed(row)
        ]  # fmt: skip
        bar = progress(len(todo), "bench: timing") if (progress and todo) else None
        with unpatched():
            for p, row in todo:
                p.time(row, timer)
                write_json(path, doc)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        doc["timer"] = {"warm_up_s": timer.warmed_s, "rounds": timer.rounds}
        doc["complete"] = True
        doc["summary"] = summary(doc, [part.area for part in points.parts])
        write_json(path, doc)
    except KeyboardInterrupt:
        doc["interrupted"] = True
        doc["summary"] = summary(doc, [part.area for part in points.parts])
        write_json(path, doc)
        raise
    return doc


def summary(doc: dict[str, Any], areas: list[str]) -> dict[str, Any]:
    from sglang_consumer_gpu.measure.common import geomean

    def part(rows: list[dict[str, Any]]) -> dict[str, Any]:
        timed = [r["speedup"] for r in rows if r["sglang"].get("status") == "timed" and r.get("speedup")]
        return {
            "points": len(rows),
            "timed": len(timed),
            "same": sum(untimed(r) for r in rows),
            "sglang_would_fail": sum(
                r["sglang"]["status"].startswith(("would fail", "failed")) for r in rows
            ),
            "errors": sum("error" in r for r in rows),
            "plugin_check_failed": sum(
                bool(r["plugin"].get("check")) and not r["plugin"]["check"]["ok"] for r in rows
            ),
            "speedup_geomean": geomean(timed) if timed else None,
        }

    return {area: part(doc[area]) for area in areas}
