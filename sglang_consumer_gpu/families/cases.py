"""What the selftest runs: a family's cases, their verdicts, and what the runner offers a case.

A family lists its :class:`Case` rows for a GPU (its ``selftest_cases``); a runnable case
carries a :class:`Run` that says what to compile ahead (``jobs``) and how to check itself on the
live GPU (``execute``) with the :class:`Runner`'s services: the verdict against the engine's
bound, the safety net's record, the answers SGLang's patched lookup gave. The selftest
(:mod:`sglang_consumer_gpu.selftest`) plans, compiles, runs and reports; it knows no family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.common import Check
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.oracle.item import FAIL, PASS, SKIP

__all__ = ["FAIL", "PASS", "SKIP", "Case", "Request", "Result", "Run", "Runner"]


class Run(Protocol):
    """What one case runs on the live GPU."""

    def jobs(self) -> list[Any]:
        """Compile jobs (:mod:`sglang_consumer_gpu.measure.compile`) to run ahead of the case."""
        ...

    def execute(self, runner: Runner, case: Case) -> Result:
        """Run the case and judge it."""
        ...


@dataclass(frozen=True)
class Case:
    """One selftest row: what is run (``run``), or why nothing can be (``skip``)."""

    area: str
    name: str
    kernel: str
    config: str = "-"
    source: str = "-"
    run: Run | None = None
    skip: str | None = None
    error: str | None = None  # planning it failed (SGLang answered unexpectedly): a FAIL row

    def jobs(self) -> list[Any]:
        return self.run.jobs() if self.run is not None else []

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "name": self.name, "kernel": self.kernel, "config": self.config,
                "source": self.source, "skip": self.skip, "error": self.error}  # fmt: skip


@dataclass
class Result:
    """One case's verdict. ``reason``: why it failed or was skipped, or what passed (error vs bound)."""

    case: Case
    status: str
    reason: str
    error: float | None = None
    bound: float | None = None
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.case.to_dict(), "status": self.status, "reason": self.reason, "error": self.error,
                "bound": self.bound, "seconds": round(self.seconds, 3), "detail": self.detail}  # fmt: skip


@dataclass(frozen=True)
class Request:
    """What the selftest asks every family for: ``quick`` or full mode, why SGLang's kernels
    cannot be driven here (``problem``, None when they can), a model's MoE layers (name, layer,
    activation dtype) and extend-attention head dims, and at most ``max_per_source`` config-file
    entries per source in full mode. ``left_out`` collects what a cap left out (the plan's notes)."""

    quick: bool
    problem: str | None = None
    model_shapes: tuple[tuple[str, MoeShape, str], ...] = ()
    model_attention: tuple[tuple[int, int], ...] = ()
    max_per_source: int | None = None
    left_out: dict[str, int] = field(default_factory=dict)


class Runner(Protocol):
    """The selftest runner as a case's ``execute`` sees it (:class:`sglang_consumer_gpu.selftest.run.Runner`)."""

    spec: GpuSpec
    device: str
    lookup: dict[str, str]  # case name -> what SGLang's patched lookup answered
    compiled: dict[str, str]  # compile-job key -> "" or why it failed
    patches: dict[str, str]  # patch name -> status in this process
    safety: dict[str, str]  # safety-net patch name -> status

    def verdict(self, case: Case, check: Check, **detail: Any) -> Result:
        """PASS or FAIL from the engine's check against its bound."""
        ...

    def guard_verdict(self, result: Result, kernel: str) -> Result:
        """A safety case's result: it passes only if the safety net fitted ``kernel``."""
        ...

    def generator(self) -> Any:
        """The run's seeded torch generator on the device."""
        ...


def tile_text(tile: tuple[int, ...]) -> str:
    if len(tile) == 2:
        return f"BLOCK {tile[0]} w{tile[1]}"
    return f"{tile[0]}x{tile[1]} w{tile[2]}"


def inactive(spec: GpuSpec, what: str) -> str:
    return (
        f"the plugin's {what} patch does not act on {spec.name} "
        f"({spec.arch_name}, {spec.smem_per_block_optin:,} B per block): SGLang's own tiles run"
    )


def safe_listing(area: str, listing: Callable[[], list[Case]]) -> list[Case]:
    """A family's cases, or one FAIL row saying why they could not be planned (an SGLang whose
    helpers answer differently must not take the other areas down, nor pass)."""
    try:
        return listing()
    except Exception as exc:
        text = str(exc).strip().splitlines()
        why = f"could not plan this area: {type(exc).__name__}: {text[-1] if text else ''}"[:400]
        return [Case(area, f"{area} (planning)", "-", error=why)]
