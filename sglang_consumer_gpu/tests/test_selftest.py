"""The selftest's cases as tests (see the package docstring)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sglang_consumer_gpu.selftest.live import NoGpu, live_gpu

#: ``quick`` selects the quick subset (default: the full selftest, like the command).
MODE_ENV = "SGLANG_CONSUMER_GPU_SELFTEST"


def _plan() -> tuple[Any, str | None]:
    try:
        live = live_gpu("selftest")
    except NoGpu as exc:
        return None, str(exc)
    from sglang_consumer_gpu.measure.common import sglang_version
    from sglang_consumer_gpu.selftest.plan import build_plan

    quick = os.environ.get(MODE_ENV, "").strip().lower() == "quick"
    return build_plan(live.spec, sglang=sglang_version(), quick=quick), None


PLAN, NO_GPU = _plan()
CASES = (
    [pytest.param(c, id=f"{c.area}: {c.name}") for c in PLAN.cases]
    if PLAN is not None
    else [pytest.param(None, id="no GPU", marks=pytest.mark.skip(reason=NO_GPU))]
)


@pytest.fixture(scope="module")
def runner() -> Any:
    """One runner for every case: the plugin active for the live GPU, every kernel compiled first."""
    from sglang_consumer_gpu.selftest.run import session

    with session(PLAN) as r:
        r.prepare()
        yield r


@pytest.mark.parametrize("case", CASES)
def test_case(case: Any, runner: Any) -> None:
    if case.skip is not None:
        pytest.skip(case.skip)
    result = runner.execute(case)
    if result.status == "SKIP":
        pytest.skip(result.reason)
    assert result.status == "PASS", f"{case.name} [{case.config}, {case.source}]: {result.reason}"
