"""What a kernel family is to the tools (the :class:`Family` protocol and what its hooks return), and SGLang
on a GPU that is not here.

:func:`on_gpu` is the one way the tools make SGLang answer as it would on a given GPU, with
the plugin (``patched``: what a user's server runs) or without it (SGLang alone): the virtual
GPU (:func:`~sglang_consumer_gpu.oracle.virtual.virtual_gpu`) plus the plugin's patches decided
for that GPU, or reverted. A block nested in one for the same GPU and patch state changes
nothing, so a ``check`` run sets it up once, and a family's ``sglang_choice`` can be asked
inside or outside one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.item import CheckItem

#: The (GPU, patched) states entered, innermost last.
_states: list[tuple[GpuSpec, bool]] = []


@contextlib.contextmanager
def on_gpu(spec: GpuSpec, *, patched: bool = True) -> Iterator[GpuSpec]:
    """Inside the block SGLang runs as on ``spec``, with the plugin's patches decided for it
    (``patched``) or SGLang's own code (not ``patched``). See the module docstring."""
    if _states and _states[-1] == (spec, patched):
        yield spec
        return
    from sglang_consumer_gpu.activation import register_builtins
    from sglang_consumer_gpu.oracle.virtual import clear_sglang_caches, virtual_gpu
    from sglang_consumer_gpu.patching import registry

    with virtual_gpu(spec):
        _states.append((spec, patched))
        try:
            if patched:
                register_builtins()
                registry.reapply_loaded()
                yield spec
            else:
                with registry.unpatched():
                    # The virtual GPU cleared SGLang's caches while the patches hid its own cached
                    # functions (get_moe_configs is an lru_cache): clear them now, and again before
                    # the patches cover them up on the way out.
                    clear_sglang_caches()
                    try:
                        yield spec
                    finally:
                        clear_sglang_caches()
        finally:
            _states.pop()


@contextlib.contextmanager
def quiet_sglang() -> Iterator[None]:
    """SGLang warns "Using default MoE kernel config" for every shape without a tuned file:
    where the tools ask SGLang for its own choice, that is the expected answer, not news."""
    log = logging.getLogger("sglang")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@dataclass(frozen=True)
class Fit:
    """Shared memory of one configuration on one GPU, and how it was known."""

    shared: int | None
    how: str  # "bound", "oracle", or "error: ..."
    fits: bool | None

    def label(self, limit: int) -> str:
        if self.shared is None:
            return self.how
        if self.fits is False:
            return f"{self.shared} B > {limit}: DOES NOT FIT ({self.how})"
        bound = "<= " if self.how.startswith("bound") else ""
        return f"{bound}{self.shared} B ({self.how})"

    def to_dict(self) -> dict[str, Any]:
        return {"shared": self.shared, "how": self.how, "fits": self.fits}


def error_fit(exc: BaseException, limit: int = 200) -> Fit:
    """A configuration whose compile raised: not known to fit."""
    text = str(exc).strip().splitlines()
    return Fit(None, f"error: {type(exc).__name__}: {text[-1] if text else ''}"[:limit], False)


@dataclass(frozen=True)
class KernelRow:
    """One kernel of a launch over a range of batch sizes that share a config: the plugin's
    choice and SGLang's own, and whether each fits (``doctor --model``)."""

    kernel: str
    batches: str
    plugin_config: str
    plugin_source: str
    plugin_fit: Fit
    sglang_config: str
    sglang_fit: Fit

    @property
    def sglang_alone_fails(self) -> bool:
        return self.sglang_fit.fits is False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "batches": self.batches,
            "plugin": {
                "config": self.plugin_config,
                "source": self.plugin_source,
                **self.plugin_fit.__dict__,
            },
            "sglang": {"config": self.sglang_config, **self.sglang_fit.__dict__},
        }


#: How bad a :class:`Finding` is: the verdict of ``doctor --model`` is its worst finding's.
FAIL, RISK, INFO = "WILL FAIL", "AT RISK", "note"


@dataclass(frozen=True)
class Finding:
    """One reason for (or remark on) the verdict of ``doctor --model``.

    ``fix`` is a launch flag and its value (``""`` for a switch) that should cure it; the planner
    re-checks the launch with it and offers it only if the verdict improves (for findings whose fix
    is no flag, the planner derives candidates from the reasons itself). ``env`` is an environment
    variable and its value that should, for the launch command ``doctor --model`` prints."""

    severity: str  # FAIL, RISK or INFO
    area: str  # "layout", "quantization", "architecture", "memory", "kernels", "input", a family's name
    text: str
    fix: tuple[str, str] | None = None
    env: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "area": self.area, "text": self.text}
        if self.fix:
            out["fix"] = list(self.fix)
        if self.env:
            out["env"] = list(self.env)
        return out


@dataclass(frozen=True)
class Section:
    """A family's own part of ``doctor --model``: a heading and its lines, the same as data for
    ``--json`` (``rows``), and its findings, which count toward the verdict."""

    area: str  # the family's name: the key of its rows in --json, the area of its findings
    title: str
    lines: tuple[str, ...]
    rows: tuple[dict[str, Any], ...] = ()
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "lines": list(self.lines), "rows": list(self.rows)}


class Provider(Protocol):
    """One area of ``check``: the configurations of one kernel family on a GPU.

    ``baseline`` providers show what SGLang chooses without the plugin (the
    before picture of ``check --baseline``); the others, what the plugin runs.
    ``items`` must be quick (no compiling: that is each item's ``run``); what it
    raises makes ``check`` name the provider and exit non-zero.
    """

    @property
    def area(self) -> str: ...

    @property
    def baseline(self) -> bool: ...

    @property
    def drives_sglang(self) -> bool:
        """Its items run SGLang's code (then listed and compiled inside ``on_gpu``)."""
        ...

    def items(self, spec: GpuSpec, *, full: bool) -> Iterable[CheckItem]: ...


class Family:
    """One kernel family (see :mod:`sglang_consumer_gpu.families`); a family's module defines a
    subclass and one instance, ``FAMILY``.

    ``name`` is its area in ``check`` and ``selftest``; ``patch_modules`` are the modules of
    :mod:`sglang_consumer_gpu.patches` that hold its patches and every SGLang path it touches (its
    seams); ``kernel_modules`` the SGLang modules a live run imports up front, so that the family's
    patches of them are in place before anything runs. A family implements what applies to it;
    the rest answers "nothing here".
    """

    name: str = ""
    patch_modules: tuple[ModuleType, ...] = ()
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        """Whether its patches act on ``spec``."""
        raise NotImplementedError

    def check_providers(self) -> tuple[Provider, ...]:
        """Its ``check`` areas: the plugin's, then SGLang's own for ``--baseline`` where it has one."""
        return ()

    def planner_rows(
        self, spec: GpuSpec, desc: Any, launch: Any, *, compile: bool, progress: Any = None
    ) -> tuple[list[KernelRow], list[str]]:
        """``doctor --model``: the rows of its kernels in a server launch (a ``models.launch.Launch``)
        of a model (a ``models.ModelDescription``), and notes on what it did not check."""
        return [], []

    def launch_facts(self, spec: GpuSpec, alone: Any, with_plugin: Callable[[], Any]) -> Any:
        """``doctor --model``: what it reads from SGLang's resolution of the launch, kept on the
        ``Launch`` (``launch.facts[name]``) for its :meth:`planner_section` (None: nothing).

        ``alone`` is SGLang's resolved ``ServerArgs`` without the plugin; ``with_plugin()`` resolves
        the same launch with the plugin's patches (once, on the first call of any family). A family
        whose patches change SGLang's resolution calls it wherever they may: the ``Launch`` then
        describes that resolution, what a server with the plugin runs."""
        return None

    def planner_section(self, spec: GpuSpec, desc: Any, launch: Any) -> Section | None:
        """``doctor --model``: its own section and findings for a launch (a ``models.launch.Launch``)
        of a model (a ``models.ModelDescription``), beside the kernel rows (None: no section)."""
        return None

    def selftest_cases(self, spec: GpuSpec, request: Any) -> list[Any]:
        """``selftest``: its rows (``families.cases.Case``) for ``spec``; what the plugin leaves to
        SGLang there is one SKIP row with the reason."""
        return []

    def selftest_prepare(self, runner: Any, cases: Iterable[Any]) -> None:
        """``selftest``, on the GPU before anything runs: what it checks once for all its cases
        (the MoE family asks SGLang's patched lookup for every config it will run)."""

    def bench_points(
        self, spec: GpuSpec, desc: Any, *, tp: int, ep: int, batch_sizes: Sequence[int] | None
    ) -> Any:
        """``bench``: its part (a ``families.bench_points.BenchPart``) for a model (a
        ``models.ModelDescription``) at ``tp``/``ep`` on ``spec``, its MoE batch sizes given or
        None for the launch's own; None: it has nothing to bench."""
        return None
