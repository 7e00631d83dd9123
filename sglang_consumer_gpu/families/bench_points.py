"""What ``bench`` times for a family: its points for a model on a GPU, each point's row of the
report, its compile jobs and its timing on the live GPU.

A family's ``bench_points`` hook gives its :class:`BenchPart`; the bench
(:mod:`sglang_consumer_gpu.bench`) lists the parts of every family, compiles, times and reports
them, and knows no family. A point compares the plugin's choice with SGLang's own for one shape
and workload. Its row starts with SGLang's status (:func:`status`): the same choice (``same
...``: not timed, 1.0 by definition), certain to fail (``would fail: OutOfResources, needs N B``:
not launched, it would only raise), or ``pending`` (both timed, then ``timed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sglang_consumer_gpu.families.base import Fit


class BenchPoint(Protocol):
    """One point of a family's part."""

    def row(self, limit: int) -> dict[str, Any]:
        """Its row of the report before timing (``limit``: the GPU's shared memory per block)."""
        ...

    def jobs(self, row: dict[str, Any]) -> list[Any]:
        """Compile jobs (:mod:`sglang_consumer_gpu.measure.compile`) for the choices its row still times."""
        ...

    def time(self, row: dict[str, Any], timer: Any) -> None:
        """Time it on the live GPU with ``timer`` (:class:`~sglang_consumer_gpu.measure.timer.Timer`),
        the plugin's patches reverted, into ``row``; what goes wrong is the row's ``error``."""
        ...


@dataclass
class BenchPart:
    """A family's part of ``bench`` for a model on a GPU: its points, the rows of the report's
    ``area`` section, notes on what it did not bench, and what it adds to the report's model
    entry (``model``)."""

    area: str
    points: list[BenchPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)


def would_fail(fit: Fit, limit: int) -> str:
    return f"would fail: OutOfResources, needs {fit.shared:,} B > {limit:,} B ({fit.how})"


def status(same: bool, fit: Fit, limit: int, same_text: str) -> str:
    """SGLang's column before timing: identical to the plugin's, certain to fail, or to be timed."""
    if same:
        return same_text
    return would_fail(fit, limit) if fit.fits is False else "pending"


def untimed(row: dict[str, Any]) -> bool:
    """The row's two choices are the same: nothing to compile or time."""
    return str(row["sglang"]["status"]).startswith("same ")


def record(row: dict[str, Any], times: dict[str, Any]) -> None:
    """The timer's medians into the row (SGLang's only when it was launched)."""
    for side in times:
        row[side]["us"] = times[side].us
        row[side]["timing"] = times[side].to_dict()
    if "sglang" in times:
        row["sglang"]["status"] = "timed"
        row["speedup"] = times["sglang"].us / times["plugin"].us


def oor_bytes(exc: BaseException) -> int | None:
    """The shared memory a launch refused with ``OutOfResources`` asked for, if it says."""
    required = getattr(exc, "required", None)
    return int(required) if isinstance(required, int) else None


def row_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()[:300]}"


def free() -> None:
    """Give the point's buffers back before the next point allocates its own."""
    import torch

    torch.cuda.empty_cache()
