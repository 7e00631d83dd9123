"""The selftest's verdict: a PASS / FAIL / SKIP(reason) table, a JSON document, an exit status.

Exit status (``sglang-consumer-gpu selftest``, documented in docs/selftest.md):

====  ==========================================================================
0     every case that ran passed, and at least one ran
1     a case failed
2     bad input (an unreadable model, a GPU name ``--list --gpu`` does not know)
3     nothing was tested: every case was skipped (e.g. SGLang missing); a skip is never a pass
4     no GPU this Python can launch kernels on: nothing was run
130   interrupted (Ctrl-C): the cases run so far are reported
====  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sglang_consumer_gpu.families.cases import FAIL, PASS, SKIP, Result
from sglang_consumer_gpu.measure.report import table
from sglang_consumer_gpu.selftest.plan import Plan

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_NOTHING_TESTED, EXIT_NO_GPU, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
SCHEMA = "sglang-consumer-gpu/selftest/1"


def exit_status(results: Sequence[Result], *, interrupted: bool = False) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if any(r.status == FAIL for r in results):
        return EXIT_FAIL
    if not any(r.status == PASS for r in results):
        return EXIT_NOTHING_TESTED
    return EXIT_PASS


def counts(results: Iterable[Result]) -> dict[str, int]:
    out = {PASS: 0, FAIL: 0, SKIP: 0}
    for r in results:
        out[r.status] += 1
    return out


@dataclass
class Report:
    """One selftest run (``results`` may stop short of the plan when ``interrupted``)."""

    plan: Plan
    results: list[Result]
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    patches: dict[str, str] = field(default_factory=dict)
    triton_limit: int | None = None
    compile: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def status(self) -> int:
        return exit_status(self.results, interrupted=self.interrupted)

    def summary(self) -> dict[str, Any]:
        c = counts(self.results)
        return {"pass": c[PASS], "fail": c[FAIL], "skip": c[SKIP], "planned": len(self.plan.cases),
                "run": len(self.results), "seconds": round(self.seconds, 1), "interrupted": self.interrupted,
                "exit_status": self.status}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "mode": self.plan.mode,
            "gpu": self.plan.spec.to_dict(),
            "triton_max_shared_mem": self.triton_limit,
            "sglang": self.plan.sglang,
            "notes": [*self.notes, *self.plan.notes],
            "environment": self.environment,
            "patches": self.patches,
            "compile": self.compile,
            "summary": self.summary(),
            "cases": [r.to_dict() for r in self.results],
        }

    def headline(self) -> str:
        s, spec = self.summary(), self.plan.spec
        return (
            f"{spec.name} ({spec.arch_name}, {spec.smem_per_block_optin:,} B shared memory per block), "
            f"SGLang {self.plan.sglang or '-'}, {self.plan.mode}: {s['pass']} PASS, {s['fail']} FAIL, "
            f"{s['skip']} SKIP in {s['seconds']:.0f} s"
            + (f" (interrupted after {s['run']} of {s['planned']} cases)" if self.interrupted else "")
        )


def no_gpu_document(reason: str, mode: str) -> dict[str, Any]:
    """The JSON answer when there is no GPU: nothing ran, reported as skipped."""
    return {"schema": SCHEMA, "mode": mode, "gpu": None, "notes": [reason],
            "summary": {"pass": 0, "fail": 0, "skip": 1, "planned": 0, "run": 0, "seconds": 0.0,
                        "interrupted": False, "exit_status": EXIT_NO_GPU, "no_gpu": reason},
            "cases": [{"area": "-", "name": "every case", "kernel": "-", "config": "-", "source": "-",
                       "skip": reason, "status": SKIP, "reason": reason, "error": None, "bound": None,
                       "seconds": 0.0, "detail": {}}]}  # fmt: skip


def result_table(results: Sequence[Result]) -> str:
    rows = [(r.case.area, r.case.name, r.case.config, r.case.source, r.status, r.reason) for r in results]
    return table(rows, ("area", "case", "config", "source", "", "why / error vs bound"))


def plan_table(plan: Plan) -> str:
    rows = [
        (c.area, c.name, c.config, c.source, "SKIP" if c.skip else "run", c.skip or "") for c in plan.cases
    ]
    return table(rows, ("area", "case", "config", "source", "", "skip reason"))
