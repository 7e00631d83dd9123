"""Timing the bench points on the live GPU with the engine's one timer; the report after every point.

Per point, both choices run through SGLang's own launchers with the config or tile given
explicitly (:class:`~sglang_consumer_gpu.measure.moe.MoeLayer` ``gemms``: both GEMMs of the
layer, activations quantized outside the timed region; :class:`~sglang_consumer_gpu.measure.
attention.ExtendRun`), timed interleaved under CUDA graphs on inputs rotated past L2
(:meth:`~sglang_consumer_gpu.measure.timer.Timer.compare`), and the plugin's MoE choice is
checked against the float32 reference. The plugin's patches (the safety net included) are
reverted while timing, so "SGLang alone" is SGLang alone. A point where both choices are the
same is not timed (1.0 by definition); one where SGLang's own choice does not fit the GPU is
not launched: it would fail with ``OutOfResources`` and the bytes it needs are reported.

The JSON document is rewritten atomically after every point, so an interrupted run (Ctrl-C)
leaves a valid partial report (``complete: false``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.bench.points import AttentionPoint, BenchPoints, MoePoint
from sglang_consumer_gpu.families.base import Fit
from sglang_consumer_gpu.measure.report import write_json
from sglang_consumer_gpu.moe.validate import pair_label

SCHEMA = "sglang-consumer-gpu/bench/1"
Progress = Callable[[int, str], Any]


def would_fail(fit: Fit, limit: int) -> str:
    return f"would fail: OutOfResources, needs {fit.shared:,} B > {limit:,} B ({fit.how})"


def document(points: BenchPoints, environment: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    d = points.model
    return {
        "schema": SCHEMA,
        "complete": False,
        "interrupted": False,
        "environment": environment,
        "gpu": points.spec.to_dict(),
        "model": {
            "name": d.name,
            "config_path": d.config_path,
            "architecture": d.architecture,
            "moe_layer": points.shape.label if points.shape else None,
            "attention": {
                "kind": d.attention.kind,
                "q_heads": d.attention.q_heads,
                "kv_heads": d.attention.kv_heads,
                "head_dim": d.attention.head_dim,
            },
        },
        "tp": points.tp,
        "ep": points.ep,
        "activation_dtype": points.act,
        "notes": [*notes, *points.notes],
        "timer": {},
        "compile": {},
        "moe": [_moe_row(p, points.spec.smem_per_block_optin) for p in points.moe],
        "attention": [_attention_row(p, points.spec.smem_per_block_optin) for p in points.attention],
    }


def _status(same: bool, fit: Fit, limit: int, same_text: str) -> str:
    """SGLang's column before timing: identical to the plugin's, certain to fail, or to be timed."""
    if same:
        return same_text
    return would_fail(fit, limit) if fit.fits is False else "pending"


def _moe_row(p: MoePoint, limit: int) -> dict[str, Any]:
    status = _status(p.same, p.sglang_fit, limit, "same config")
    return {
        "M": p.case.M,
        "plugin": {
            "config": p.plugin.up,
            "down_config": p.plugin.down,
            "label": pair_label(p.plugin.up, p.plugin.down),
            "source": p.plugin.source,
            "path": p.plugin.path,
            "fit": p.plugin_fit.to_dict(),
            "us": None,
            "check": None,
        },
        "sglang": {
            "config": p.sglang_up,
            "down_config": p.sglang_down,
            "label": pair_label(p.sglang_up, p.sglang_down),
            "fit": p.sglang_fit.to_dict(),
            "status": status,
            "us": None,
        },
        "speedup": 1.0 if p.same else None,
    }


def _attention_row(p: AttentionPoint, limit: int) -> dict[str, Any]:
    status = _status(p.same, p.sglang_fit, limit, "same tile")
    return {"kernel": p.label, "workload": p.workload, "plugin": {"tile": list(p.plugin), "us": None},
            "sglang": {"tile": list(p.sglang), "fit": p.sglang_fit.to_dict(), "status": status, "us": None},
            "speedup": 1.0 if p.same else None}  # fmt: skip


def _jobs(points: BenchPoints, doc: dict[str, Any]) -> list[Any]:
    from sglang_consumer_gpu.measure.attention import AttentionJob
    from sglang_consumer_gpu.measure.moe import MoeJob

    jobs: dict[str, Any] = {}
    for p, row in zip(points.moe, doc["moe"], strict=True):
        if row["sglang"]["status"] == "same config":
            continue
        wanted = [(p.plugin.up, p.plugin.down)]
        if row["sglang"]["status"] == "pending":
            wanted.append((p.sglang_up, p.sglang_down))
        for up, down in wanted:
            job = MoeJob.of(p.case, up, down)
            jobs[job.key] = job
    for p, row in zip(points.attention, doc["attention"], strict=True):
        if row["sglang"]["status"] == "same tile":
            continue
        tiles = [p.plugin, p.sglang] if row["sglang"]["status"] == "pending" else [p.plugin]
        for t in tiles:
            job = AttentionJob(p.case, t)
            jobs[job.key] = job
    return list(jobs.values())


def _oor_bytes(exc: BaseException) -> int | None:
    required = getattr(exc, "required", None)
    return int(required) if isinstance(required, int) else None


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
        todo = [("moe", i) for i, r in enumerate(doc["moe"]) if r["sglang"]["status"] != "same config"]
        todo += [
            ("attention", i) for i, r in enumerate(doc["attention"]) if r["sglang"]["status"] != "same tile"
        ]
        bar = progress(len(todo), "bench: timing") if (progress and todo) else None
        with unpatched():
            for area, i in todo:
                if area == "moe":
                    _time_moe(points.moe[i], doc["moe"][i], timer)
                else:
                    _time_attention(points.attention[i], doc["attention"][i], timer)
                write_json(path, doc)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        doc["timer"] = {"warm_up_s": timer.warmed_s, "rounds": timer.rounds}
        doc["complete"] = True
        doc["summary"] = summary(doc)
        write_json(path, doc)
    except KeyboardInterrupt:
        doc["interrupted"] = True
        doc["summary"] = summary(doc)
        write_json(path, doc)
        raise
    return doc


def _free() -> None:
    import torch

    torch.cuda.empty_cache()


def _time_moe(p: MoePoint, row: dict[str, Any], timer: Any) -> None:
    from sglang_consumer_gpu.measure.moe import MoeLayer

    try:
        layer = MoeLayer(p.case)
        check = layer.check(p.plugin.up, p.plugin.down)
        row["plugin"]["check"] = {"ok": check.ok, "error": check.error, "bound": check.bound}
        fns = {"plugin": layer.gemms(p.plugin.up, p.plugin.down)}
        if row["sglang"]["status"] == "pending":
            try:
                fns["sglang"] = layer.gemms(p.sglang_up, p.sglang_down)
                fns["sglang"](0)
            except Exception as exc:  # a config the oracle passed that the GPU still refuses
                need = _oor_bytes(exc)
                row["sglang"]["status"] = (
                    f"failed: OutOfResources, needs {need:,} B (live compile)"
                    if need
                    else f"failed: {type(exc).__name__}: {exc}"[:300]
                )
                fns.pop("sglang")
        _record(row, timer.compare(fns, slots=len(layer.slots)))
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    finally:
        _free()


def _record(row: dict[str, Any], times: dict[str, Any]) -> None:
    """The timer's medians into the row (SGLang's only when it was launched)."""
    for side in times:
        row[side]["us"] = times[side].us
        row[side]["timing"] = times[side].to_dict()
    if "sglang" in times:
        row["sglang"]["status"] = "timed"
        row["speedup"] = times["sglang"].us / times["plugin"].us


def _time_attention(p: AttentionPoint, row: dict[str, Any], timer: Any) -> None:
    from sglang_consumer_gpu.measure.attention import ExtendRun

    try:
        run = ExtendRun(p.case)
        fns = {"plugin": run.run(p.plugin)}
        if row["sglang"]["status"] == "pending":
            fns["sglang"] = run.run(p.sglang)
        _record(row, timer.compare(fns, slots=len(run.slots)))
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    finally:
        _free()


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    from sglang_consumer_gpu.measure.common import geomean

    def part(rows: list[dict[str, Any]]) -> dict[str, Any]:
        timed = [r["speedup"] for r in rows if r["sglang"].get("status") == "timed" and r.get("speedup")]
        return {
            "points": len(rows),
            "timed": len(timed),
            "same": sum(r["sglang"]["status"] in ("same config", "same tile") for r in rows),
            "sglang_would_fail": sum(
                r["sglang"]["status"].startswith(("would fail", "failed")) for r in rows
            ),
            "errors": sum("error" in r for r in rows),
            "plugin_check_failed": sum(
                bool(r["plugin"].get("check")) and not r["plugin"]["check"]["ok"] for r in rows
            ),
            "speedup_geomean": geomean(timed) if timed else None,
        }

    return {"moe": part(doc["moe"]), "attention": part(doc["attention"])}
