"""One tuning run: requests in, SGLang config files and a report out (the CLI's and the device
check's entry point). See the package docstring for what each step does."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape, dtype_label
from sglang_consumer_gpu.tune import output, report
from sglang_consumer_gpu.tune.search import Bench, Problem, Search
from sglang_consumer_gpu.tune.space import Space, key_of
from sglang_consumer_gpu.tune.state import TUNER_VERSION, TuneState, output_lock, side_path


@dataclass(frozen=True)
class Request:
    """Tune ``shape`` with ``act_dtype`` activations at ``grid`` for ``target``, timing on
    ``live`` (the same GPU unless a test prunes for another one), into ``out_dir``."""

    shape: MoeShape
    grid: tuple[int, ...]
    target: GpuSpec
    live: GpuSpec
    out_dir: Path
    act_dtype: str = "bfloat16"
    workers: int | None = None
    budget_s: float | None = None
    fresh: bool = False

    @property
    def label(self) -> str:
        return f"{self.shape.label} ({self.act_dtype})"

    @property
    def paths(self) -> tuple[Path, Path]:
        return output.config_paths(self.shape, self.target.name, self.out_dir)

    @property
    def state_path(self) -> Path:
        return side_path(self.paths[0], ".state.json")


@dataclass
class Outcome:
    request: Request
    written: list[Path]
    table: list[dict[str, Any]]
    record: dict[str, Any]
    resumed: str
    notes: list[str] = field(default_factory=list)


def problem(req: Request) -> Problem:
    """The space for the target, and per batch size the heuristic's and SGLang's choices on it."""
    from sglang_consumer_gpu.families.moe import sglang_default
    from sglang_consumer_gpu.moe.heuristic import heuristic_config

    return Problem(
        shape=req.shape,
        grid=tuple(sorted(set(req.grid))),
        space=Space.for_shape(req.target, req.shape),
        heuristic={M: key_of(heuristic_config(M, req.shape, req.target)) for M in req.grid},
        default={M: key_of(sglang_default(req.target, req.shape, M)) for M in req.grid},
    )


def fingerprint(req: Request) -> dict[str, Any]:
    """What the saved timings depend on (a state for anything else is not resumed)."""
    from sglang_consumer_gpu.versions import installed_version

    return {
        "tuner": TUNER_VERSION, "shape": req.shape.label, "act_dtype": req.act_dtype,
        "batch_sizes": sorted(set(req.grid)), "target": req.target.name, "timed_on": req.live.name,
        "triton": installed_version("triton"), "sglang": _sglang_version(),
    }  # fmt: skip


def _sglang_version() -> str | None:
    from sglang_consumer_gpu.measure.common import environment

    return environment()["sglang"]


def _bar(desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=0, desc=desc, file=sys.stderr, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {elapsed}, ETA {remaining} {postfix}")  # fmt: skip


def tune_one(req: Request, bench: Bench, say: Callable[[str], None] = print) -> Outcome:
    """Search (resuming a saved state), write the files, remove the state. The caller holds
    the output lock (:func:`tune`)."""
    t0 = time.monotonic()
    prob = problem(req)
    state, resumed = (
        (TuneState(fingerprint(req)), "fresh (--fresh)")
        if req.fresh
        else TuneState.load(req.state_path, fingerprint(req))
    )
    say(f"tune-moe {req.label} for {req.target.name}: {len(prob.space)} of {prob.space.size} configs of "
        f"SGLang's space fit; {len(prob.grid)} batch sizes; state: {resumed}")  # fmt: skip
    deadline = None if req.budget_s is None else bench.now() + req.budget_s
    bar = _bar(f"{dtype_label(req.shape.dtype)} M={prob.grid[0]}..{prob.grid[-1]}")
    reserve = [0]

    def grow(x: int) -> None:
        """Work becomes known wave by wave; the first estimate is kept as the bar's total
        until the real work exceeds it, so the ETA does not restart with every wave."""
        used = min(x, reserve[0])
        reserve[0] -= used
        if x > used:
            bar.total += x - used
            bar.refresh()

    search = Search(prob, bench, state, deadline=deadline, save=lambda: state.save(req.state_path),
                    grow=grow, step=bar.update, say=bar.set_postfix_str)  # fmt: skip
    reserve[0] = bar.total = search.estimate()
    try:
        search.run()
        bar.total -= reserve[0]  # the estimate's unused rest
        bar.refresh()
    finally:
        bar.close()
    table = report.rows(state.finished)
    record = {
        "tool": "sglang-consumer-gpu tune-moe", **fingerprint(req), "tuned_for": req.target.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": time.monotonic() - t0,
        "resumed": resumed, "space": {"sglang_space": prob.space.size, "fit_by_bound": len(prob.space)},
        "counters": state.counters, "failed": state.failed, "notes": state.notes,
        "report": table, "summary": report.summary(table),
    }  # fmt: skip
    if not any(r["config"] for r in table):
        raise RuntimeError(f"{req.label}: no config passed at any batch size ({len(state.failed)} failed)")
    written = output.write(req.paths, {M: r for M, r in state.finished.items() if r.get("config")}, record)
    req.state_path.unlink(missing_ok=True)
    return Outcome(req, written, table, record, resumed, list(state.notes))


def tune(
    requests: list[Request], make_bench: Callable[[Request], Bench], say: Callable[[str], None] = print
) -> list[Outcome]:
    """Lock every output, then tune each request in turn."""
    outcomes = []
    with output_lock([r.paths[0] for r in requests]):
        for req in requests:
            bench = make_bench(req)
            try:
                outcomes.append(tune_one(req, bench, say))
            finally:
                close = getattr(bench, "close", None)
                if close is not None:
                    close()
    return outcomes
