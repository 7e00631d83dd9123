"""What a patch is: a declaration the registry can check before touching SGLang."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec


class Status(str, enum.Enum):
    APPLIED = "applied"
    NOT_NEEDED = "not needed on this GPU"
    UPSTREAM_FIXED = "already fixed upstream"
    TARGET_MISSING = "target missing"
    TARGET_CHANGED = "target changed"
    VERSION_SKIPPED = "version not covered"
    FAILED = "failed"
    PENDING = "waiting for import"
    DISABLED = "disabled"
    #: ``doctor``'s answer from SGLang's source: every check passed, the patch applies once its
    #: module is imported in SGLang's processes.
    WILL_APPLY = "will apply"


@dataclass(frozen=True)
class Seam:
    """Where a patch's target lives in a range of SGLang releases, and what the
    patch relies on there. The registry checks it at run time; CI checks it
    against every covered release's source (``patches.static``).

    * ``params``: the target function's parameter names, in order (``None``:
      not a function the plugin calls with its own arguments, e.g. a name bound
      by ``from sgl_kernel import ...``).
    * ``called_by``: functions of the same module (``"f"`` or ``"Class.method"``)
      that call the target by its bare name, so a replaced module global is what
      they call (no re-binding needed).
    * ``launches``: ``(kernel, keywords)``: the target's body launches
      ``kernel[grid](..., keyword=...)`` with these keywords (launch filters read them).
    """

    sglang: str  # packaging specifier of the SGLang releases this seam is for
    module: str
    attr: str  # "func" or "Class.method"
    params: tuple[str, ...] | None = None
    called_by: tuple[str, ...] = ()
    launches: tuple[str, tuple[str, ...]] | None = None

    @property
    def target(self) -> str:
        return f"{self.module}.{self.attr}"


@dataclass(frozen=True)
class Patch:
    """One change to SGLang, with everything needed to decide whether to make it.

    ``build(original, module)`` returns the replacement for ``module.attr``; it
    runs only when the target exists, the versions match, upstream has not
    fixed it and the GPU needs it. The registry wraps the replacement so that
    at call time it still defers to ``original`` whenever ``needed_on`` is
    false for the GPU decisions are being made for, and for any call the
    replacement raises on.

    Where the target lives: ``seams`` (one per SGLang release range), or for a
    patch that does not move, ``module``/``attr`` with ``sglang_versions``.
    """

    name: str
    why: str  # one line: the failure this prevents
    build: Callable[[Callable[..., Any], ModuleType], Callable[..., Any]]
    module: str = ""  # dotted module path of the target (patches without seams)
    attr: str = ""  # attribute inside the module ("func" or "Class.method")
    seams: tuple[Seam, ...] = ()
    needed_on: Callable[[GpuSpec], bool] = lambda spec: spec.is_low_smem
    upstream_fixed: Callable[[ModuleType], bool] = lambda module: False
    sglang_versions: str = ""  # packaging specifier, "" = any (patches without seams)
    triton_versions: str = ""
    #: The target is Triton's, not SGLang's (the safety net): it does not move between SGLang
    #: releases, so the patch stays on for an SGLang release outside the covered range.
    triton_only: bool = False
    #: Why ``spec`` gets what it gets (which route, which tile), appended to the status detail.
    explain: Callable[[GpuSpec], str] | None = None
    #: ``upstream_fixed`` for ``spec`` from the seam module's source text alone, for ``doctor``
    #: (None: only a live import can tell). Without it ``doctor`` cannot see an upstream fix.
    upstream_fixed_from_source: Callable[[GpuSpec, str], bool | None] | None = None

    def all_seams(self) -> tuple[Seam, ...]:
        return self.seams or (Seam(self.sglang_versions, self.module, self.attr),)

    def seam_for(self, sglang_version: str | None) -> Seam | None:
        """The seam for that SGLang release (None: this patch has no target there)."""
        from sglang_consumer_gpu.versions import in_range

        for seam in self.all_seams():
            if not seam.sglang or (sglang_version is not None and in_range(sglang_version, seam.sglang)):
                return seam
        return None

    def current_seam(self) -> Seam | None:
        """The seam for the installed SGLang."""
        from sglang_consumer_gpu.versions import sglang_version

        return self.seam_for(sglang_version())

    @property
    def target(self) -> str:
        """Dotted target for the installed SGLang (the newest seam's if it has none)."""
        seam = self.current_seam() or self.all_seams()[-1]
        return seam.target

    def coverage_text(self) -> str:
        """The release ranges this patch has a seam for, e.g. ">=0.4.9,<0.5.2; >=0.5.2"."""
        return "; ".join(s.sglang or "any" for s in self.all_seams())


@dataclass
class PatchResult:
    status: Status
    detail: str = ""
    #: Calls the installed replacement raised on (SGLang's own code answered them), and the last error.
    fallbacks: int = 0
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, "detail": self.detail}
        if self.fallbacks:
            out.update(fallbacks=self.fallbacks, last_error=self.last_error)
        return out
