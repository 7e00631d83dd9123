"""Which kernel paths the selftest runs on a GPU: a function of the GpuSpec and the SGLang version.

:func:`build_plan` asks every kernel family (:data:`sglang_consumer_gpu.families.FAMILIES`) for
its cases on one GPU (the live spec: under an emulated shared-memory cap, "this H200 with 101,376
B") and one SGLang -- each to be compiled, launched on random data with NaN-poisoned outputs and
compared with a float32 reference by :mod:`.run`. Today: ``moe`` (fused MoE, both GEMMs through
SGLang's launcher, with the configs the patched lookup returns, for the reference layer in every
dtype the GPU runs, every config file the lookup takes, the model's own layer), ``attention``
(extend and context attention with the tiles the patches choose, through SGLang's own patched
helper), ``int8`` (the scaled GEMM on the route the GPU gets) and ``safety`` (tiles that do not fit,
through the guard). What each family lists, and why, is in its module.

Areas the plugin leaves to SGLang on this GPU (e.g. every patch on an uncapped H200) are one
SKIP row each, with the reason; a skip is never a pass; an area that cannot be planned is one
FAIL row. The config files present (user, bundled, SGLang's) are read, so the plan also depends
on them -- as the server's lookup does. Nothing here touches a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from sglang_consumer_gpu.families import FAMILIES
from sglang_consumer_gpu.families.cases import Case, Request, safe_listing
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.moe import MoeCase
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.versions import FIRST_RELEASE, SELFTEST_SGLANG, SGLANG_RELEASES, in_range

QUICK, FULL = "quick", "full"

#: Fused-MoE kernels one MoE case compiles (up and down GEMM).
MOE_KERNELS = 2


@dataclass(frozen=True)
class Plan:
    spec: GpuSpec
    sglang: str | None
    mode: str
    cases: tuple[Case, ...]
    notes: tuple[str, ...] = ()
    left_out: dict[str, int] = field(default_factory=dict)  # file entries over the per-source cap

    @property
    def runnable(self) -> list[Case]:
        """Cases that run (a planning error runs to its FAIL)."""
        return [c for c in self.cases if c.skip is None]

    def jobs(self) -> list[Any]:
        """Compile jobs of every runnable case, once each."""
        out: dict[str, Any] = {}
        for case in self.runnable:
            for job in case.jobs():
                out.setdefault(job.key, job)
        return list(out.values())

    def kernel_compiles(self) -> int:
        """Kernels a cold cache compiles: a fused-MoE job two (up, down) unless another job
        already compiles the same config for the same Triton specialization of M."""
        seen: set[tuple[Any, ...]] = set()
        total = 0
        for job in self.jobs():
            case = getattr(job, "case", None)
            if isinstance(case, MoeCase):
                key = (job.group, job.down_config, _m_class(case))
                if key not in seen:
                    seen.add(key)
                    total += MOE_KERNELS
            else:
                total += 1
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.spec.to_dict(), "sglang": self.sglang, "mode": self.mode,
                "notes": list(self.notes), "left_out": dict(self.left_out),
                "kernel_compiles": self.kernel_compiles(), "cases": [c.to_dict() for c in self.cases]}  # fmt: skip


def _m_class(case: MoeCase) -> tuple[bool, bool]:
    """How Triton specializes the kernel's M-dependent integers (divisible by 16, equal to 1)."""
    tokens = case.M * case.shape.topk
    return tokens % 16 == 0, tokens == 1


# ------------------------------------------------------------------------------ building


def sglang_problem(version: str | None) -> str | None:
    """Why SGLang's kernels cannot be driven here (outside ``versions.SELFTEST_SGLANG``), or None."""
    if version is None:
        return "SGLang is not installed in this Python"
    first, last = FIRST_RELEASE["selftest"], SGLANG_RELEASES[-1]
    try:
        if Version(version) < Version(first):
            return f"SGLang {version} is older than {first}: the engine drives SGLang's sglang.kernels.ops modules"
    except InvalidVersion:
        return None
    if not in_range(version, SELFTEST_SGLANG):
        return f"SGLang {version} is newer than {last}, the newest release the plugin covers: its patches stand down"
    return None


def build_plan(
    spec: GpuSpec,
    *,
    sglang: str | None,
    quick: bool,
    model_shapes: Iterable[tuple[str, MoeShape, str]] = (),
    model_attention: Iterable[tuple[int, int]] = (),
    max_per_source: int | None = None,
) -> Plan:
    """The selftest for ``spec`` and SGLang ``sglang`` (its version, None if absent).

    ``model_shapes``: (name, layer, activation dtype) of a model's MoE layers;
    ``model_attention``: its extend-attention head dims (Lq, Lv); ``max_per_source``: at most
    this many config-file entries per source in full mode (quick: the MoE family's ``QUICK_PER_SOURCE``)."""
    request = Request(quick, sglang_problem(sglang), tuple(model_shapes), tuple(model_attention), max_per_source)
    cases: list[Case] = []
    for family in FAMILIES:
        cases += safe_listing(family.name, lambda f=family: f.selftest_cases(spec, request))
    left_out = request.left_out
    notes = []
    if left_out:
        notes.append(
            "config-file entries left out over the per-source limit: "
            + ", ".join(f"{src} {n}" for src, n in left_out.items())
        )
    return Plan(spec, sglang, QUICK if quick else FULL, tuple(_unique(cases)), tuple(notes), left_out)


def _unique(cases: list[Case]) -> Iterator[Case]:
    seen: dict[str, int] = {}
    for c in cases:
        n = seen.get(c.name, 0)
        seen[c.name] = n + 1
        yield c if n == 0 else Case(**{**c.__dict__, "name": f"{c.name} #{n + 1}"})
