"""The one decision about a patch: applies, not needed, upstream fixed, target missing, ...

Two callers ask it. The registry asks in an SGLang process, with the target module imported
(:class:`~sglang_consumer_gpu.patching.registry` installs the replacement when the answer is
:data:`READY`); ``doctor`` asks from SGLang's installed source files, without importing SGLang
(``READY`` is then "will apply"). They differ only in how the target is looked at -- a
:class:`Probe` -- so the questions, their order and their words are the same:

1. is the installed SGLang covered (the safety net patches Triton: any SGLang)?
2. does the patch have a seam for this release?
3. is the installed Triton one the patch is for?
4. is the target there as the patch expects it (the probe)?
5. is there a GPU, and does it need the patch (with the patch's ``explain``)?
6. has upstream fixed it already (the probe)?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from packaging.specifiers import InvalidSpecifier

from sglang_consumer_gpu import versions
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, Seam, Status


@dataclass(frozen=True)
class Decision:
    """What a patch does, and the words that say why."""

    status: Status
    detail: str = ""


#: Every question answered yes: the registry applies the patch, ``doctor`` says it will apply.
READY = Status.WILL_APPLY


class Probe(Protocol):
    """How a caller looks at the target: imported (the registry) or read from source (``doctor``)."""

    def target(self, patch: Patch, seam: Seam) -> Decision | None:
        """None when the target is there as ``seam`` expects, else the decision that ends here."""
        ...

    def upstream_fixed(self, patch: Patch, seam: Seam, spec: GpuSpec) -> str | None:
        """The detail to report when upstream already fixed it for ``spec``, else None."""
        ...


def explain(patch: Patch, spec: GpuSpec) -> str:
    """``"; <why this GPU gets what it gets>"`` from the patch's ``explain``, or ""."""
    if patch.explain is None:
        return ""
    try:
        return f"; {patch.explain(spec)}"
    except Exception as exc:
        return f"; (explain failed: {exc})"


def not_needed(patch: Patch, spec: GpuSpec) -> Decision:
    return Decision(
        Status.NOT_NEEDED, f"{spec.name} ({spec.arch_name}) does not need it{explain(patch, spec)}"
    )


def _triton_problem(patch: Patch) -> str:
    if not patch.triton_versions:
        return ""
    have = versions.installed_version("triton")
    if have is None:
        return "triton is not installed"
    try:
        ok = versions.in_range(have, patch.triton_versions)
    except InvalidSpecifier as exc:
        return f"cannot compare triton {have} with {patch.triton_versions!r}: {exc}"
    return "" if ok else f"triton {have} not in {patch.triton_versions}"


def decide(patch: Patch, spec: GpuSpec | None, probe: Probe) -> Decision:
    """See the module docstring. Never raises for a well-formed patch; the registry records
    anything a probe raises as FAILED."""
    cov = versions.coverage()
    if not cov.covered and not patch.triton_only:
        return Decision(Status.VERSION_SKIPPED, cov.message)
    seam = patch.seam_for(cov.version)
    if seam is None:
        return Decision(
            Status.VERSION_SKIPPED,
            f"SGLang {cov.version} has no target for this patch (it has one in SGLang {patch.coverage_text()})",
        )
    problem = _triton_problem(patch)
    if problem:
        return Decision(Status.VERSION_SKIPPED, problem)
    found = probe.target(patch, seam)
    if found is not None:
        return found
    if spec is None:
        return Decision(Status.NOT_NEEDED, "no NVIDIA GPU visible; SGLang's own code runs")
    if not patch.needed_on(spec):
        return not_needed(patch, spec)
    fixed = probe.upstream_fixed(patch, seam, spec)
    if fixed is not None:
        return Decision(Status.UPSTREAM_FIXED, fixed)
    return Decision(READY, explain(patch, spec))
