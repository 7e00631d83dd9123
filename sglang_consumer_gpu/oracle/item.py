"""What ``check`` reports: one configuration a GPU would compile, and its verdict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sglang_consumer_gpu.oracle.core import Resources

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class CheckItem:
    """One configuration a GPU would compile, and its verdict.

    A provider yields items *pending* (``run`` set, nothing compiled yet) so
    that ``check`` knows the total before the slow part; :func:`finish` runs
    one and returns the finished items, one per kernel it compiled (a run
    returns :class:`Resources` or a sequence of them). ``skip`` says why there
    is nothing to compile (the GPU cannot run this at all, whatever the
    config): a SKIP neither passes nor fails.
    """

    area: str = ""  # the provider's area; filled in by the registry
    kernel: str = ""
    config: str = ""  # human-readable: shape, batch, tile
    resources: Resources | None = None
    error: str | None = None
    skip: str | None = None
    run: Callable[[], Resources | Sequence[Resources]] | None = field(default=None, repr=False, compare=False)

    @property
    def pending(self) -> bool:
        return self.run is not None and self.resources is None and self.error is None and self.skip is None

    @property
    def ok(self) -> bool:
        return self.error is None and self.resources is not None and self.resources.fits

    @property
    def status(self) -> str:
        if self.skip is not None:
            return SKIP
        return PASS if self.ok else FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "kernel": self.kernel,
            "config": self.config,
            "resources": self.resources.to_dict() if self.resources else None,
            "error": self.error,
            "skip": self.skip,
            "status": self.status,
            "ok": self.ok,
        }


def finish(item: CheckItem) -> list[CheckItem]:
    """``item`` compiled: one finished item per kernel its run compiled; a run
    that raises is one FAIL carrying the reason."""
    run = item.run
    if run is None or not item.pending:
        return [replace(item, run=None)]
    try:
        out = run()
    except Exception as exc:
        return [replace(item, run=None, error=error_text(exc))]
    results = [out] if isinstance(out, Resources) else list(out)
    if not results:
        return [replace(item, run=None, error="compiled no kernel")]
    return [replace(item, run=None, kernel=res.kernel, resources=res) for res in results]


def error_text(exc: BaseException) -> str:
    """One line for a table: the exception's type and the last line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]
