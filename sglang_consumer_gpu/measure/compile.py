"""Compile kernel variants in parallel processes, so that one process can time them all.

Compilation, not timing, dominates a search on a real machine: about 4 s per compile of
SGLang's ``fused_moe_kernel`` per CPU core, and a new batch size can recompile (Triton
specializes integer arguments by divisibility by 16). :func:`precompile` runs each job's
``warm()`` -- one launch of the real kernel on the live GPU with the specialization the timed
run will have -- in ``workers`` spawned processes; Triton's on-disk cache then serves the
timing process, which compiles nothing. A job that fails here is reported, not raised: the
caller decides whether a config that cannot compile on this Triton is an error (a choice the
plugin would make) or a pruned candidate (a search).

Jobs are plain picklable objects (:class:`Job`); the engine's areas define them
(:class:`~sglang_consumer_gpu.measure.moe.MoeJob`, ...).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol

LATE = "not reached before the deadline"


class Job(Protocol):
    """One kernel variant to compile by running it once."""

    @property
    def key(self) -> str:
        """Stable name of the variant (jobs with equal keys are compiled once)."""

    @property
    def group(self) -> str:
        """Jobs of one group go to the same worker, one after the other, so that a kernel
        they share is compiled once instead of concurrently in several processes."""

    @property
    def cost(self) -> float:
        """Relative compile time (larger tiles compile longer); used only to balance workers."""

    def warm(self) -> None:
        """Launch the kernel once on the live GPU (compiles it into Triton's cache)."""


def default_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


def spawn_pool(workers: int, initializer: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """``workers`` spawned processes (a forked child of a process that holds a CUDA context cannot
    use it), all started now with SIGINT ignored, which they keep from birth: a terminal's Ctrl-C
    reaches the whole process group, and only the parent should act on it (save what it learned,
    say how to continue). A worker it killed would break the pool, and every job still queued
    would read as a compiler crash."""
    n = max(1, workers)
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=initializer)
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        for _ in range(n):  # each submit starts a worker while none is idle
            pool.submit(int)
    finally:
        if main:
            signal.signal(signal.SIGINT, before)
    return pool


def chunks(jobs: Sequence[Job], workers: int, first: Iterable[str] = ()) -> list[list[Job]]:
    """One list per worker: groups kept whole, costliest groups dealt first in snake order,
    and within a list the jobs named in ``first`` ahead of the rest."""
    groups: dict[str, list[Job]] = {}
    for job in {j.key: j for j in jobs}.values():
        groups.setdefault(job.group, []).append(job)
    order = sorted(groups, key=lambda g: (-sum(j.cost for j in groups[g]), g))
    out: list[list[Job]] = [[] for _ in range(max(1, workers))]
    n = len(out)
    for i, g in enumerate(order):
        r = i % (2 * n)
        out[r if r < n else 2 * n - 1 - r].extend(groups[g])
    wanted = set(first)
    return [sorted(c, key=lambda j: j.key not in wanted) for c in out if c]


def _run_chunk(args: tuple[list[Job], float | None, bool]) -> dict[str, str]:
    jobs, deadline, quiet = args
    if quiet:  # Triton's pass manager prints whole MLIR modules to stderr on a failed compile
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    result: dict[str, str] = {}
    for job in jobs:
        if deadline is not None and time.time() > deadline:
            result[job.key] = LATE
            continue
        try:
            job.warm()
            result[job.key] = ""
        except Exception as exc:
            result[job.key] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return result


def precompile(
    jobs: Sequence[Job],
    workers: int | None = None,
    *,
    deadline: float | None = None,
    first: Iterable[str] = (),
    quiet: bool = True,
    on_done: Callable[[int], Any] | None = None,
) -> dict[str, str]:
    """Warm every job in ``workers`` spawned processes: ``{key: ""}`` for a job that ran, the
    error text for one that raised, :data:`LATE` for one not started before ``deadline``
    (``time.time()``). ``first``: keys each worker takes before the rest (the configs that
    must be timed, e.g. SGLang's default and the plugin's choice).

    ``on_done(n)``: called as jobs finish, with how many (for a progress bar). The groups are
    then handed to the workers one at a time, in the same costliest-first order, instead of
    as one list per worker: a group still runs whole in one process."""
    if not jobs:
        return {}
    n_workers = workers or default_workers()
    parts = chunks(jobs, n_workers, first)
    if len(parts) == 1 and workers == 1:
        out = _run_chunk((parts[0], deadline, False))
        if on_done is not None:
            on_done(len(out))
        return out
    out = {}
    if on_done is None:
        with spawn_pool(len(parts)) as pool:
            for part in pool.map(_run_chunk, [(p, deadline, quiet) for p in parts]):
                out.update(part)
        return out
    groups = chunks(jobs, len({j.group for j in jobs}), first)  # one list per group, costliest first
    with spawn_pool(min(n_workers, len(groups))) as pool:
        futures = [pool.submit(_run_chunk, (g, deadline, quiet)) for g in groups]
        for future in as_completed(futures):
            part = future.result()
            out.update(part)
            on_done(len(part))
    return out


def failed(results: dict[str, str]) -> dict[str, str]:
    """The jobs that did not compile (or were not reached), with why."""
    return {k: v for k, v in results.items() if v}


def describe(results: dict[str, str]) -> dict[str, Any]:
    """A summary for result files: counts and the failures."""
    bad = failed(results)
    return {
        "jobs": len(results),
        "failed": len([v for v in bad.values() if v != LATE]),
        "late": len([v for v in bad.values() if v == LATE]),
        "errors": bad,
    }
