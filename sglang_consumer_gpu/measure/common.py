"""Pieces every area of the engine shares: the check result, error metrics, the environment record."""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Unit roundoff (half the spacing just above 1) of the 16-bit output types: one
#: round-to-nearest changes a value by at most this fraction of itself.
UNIT_ROUNDOFF: dict[str, float] = {"bfloat16": 2.0**-8, "float16": 2.0**-11, "float32": 2.0**-24}
#: What a float32 dot in a Triton kernel rounds its operands to by default (TF32).
TF32_ROUNDOFF = 2.0**-11


@dataclass
class Check:
    """One correctness verdict: ``error`` (the ``metric``) against ``bound``, and no unwritten output."""

    ok: bool
    error: float
    bound: float
    metric: str
    unwritten: int = 0  # output elements still NaN (poisoned) after the run, or non-finite
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_relative_error(out: Any, ref: Any) -> float:
    """max over rows of ||out_row - ref_row|| / ||ref_row|| (rows: all but the last dim).

    A row-wise metric, not one norm over the whole output: one wrong row among thousands
    (a mis-routed token) moves a global norm by 1/sqrt(rows) but its own row by O(1)."""
    o = out.reshape(-1, out.shape[-1]).double()
    r = ref.reshape(-1, ref.shape[-1]).double()
    num = (o - r).norm(dim=1)
    den = r.norm(dim=1).clamp_min(1e-30)
    return float((num / den).max()) if num.numel() else 0.0


def non_finite(t: Any) -> int:
    """Elements that are NaN or infinite (a poisoned element the kernel did not write is NaN)."""
    import torch

    return int((~torch.isfinite(t)).sum())


def judge(
    out: Any, ref: Any, bound: float, metric: str = "max row relative L2 error", **detail: Any
) -> Check:
    """:class:`Check` of ``out`` against ``ref``: every element written and finite, error <= bound."""
    bad = non_finite(out)
    err = math.inf if bad else row_relative_error(out, ref)
    return Check(
        ok=bad == 0 and err <= bound, error=err, bound=bound, metric=metric, unwritten=bad, detail=detail
    )


def worst(checks: Iterable[Check]) -> Check:
    """The check furthest from passing (failed first, then the largest error / bound)."""
    return max(checks, key=lambda c: (not c.ok, c.error / c.bound if c.bound else math.inf))


def geomean(xs: Iterable[float]) -> float:
    vals = [x for x in xs if x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


def environment() -> dict[str, Any]:
    """Where a result was measured: goes at the top of every result file."""
    import torch
    import triton

    from sglang_consumer_gpu.versions import report

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu (Triton interpreter)",
        "capability": list(torch.cuda.get_device_capability()) if cuda else None,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "sglang": sglang_version(),
        "sgl_kernel": report().get("sgl-kernel"),
        "python": platform.python_version(),
    }


def sglang_version() -> str | None:
    """SGLang's version from its metadata, or from the imported package (a carried copy)."""
    from sglang_consumer_gpu.versions import installed_version

    found = installed_version("sglang")
    if found:
        return found
    try:
        import sglang.version as v

        return str(v.__version__)
    except Exception:
        return None
