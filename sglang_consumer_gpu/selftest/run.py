"""Running a selftest plan on the live GPU, through the measurement engine.

:class:`Runner` (use :func:`session`) first makes this process what a server process with the
plugin is: every plugin decision for the live spec (``override_spec``), the plugin activated
(idempotent: a pip-installed plugin's ``.pth`` has already done it when SGLang was imported)
and SGLang's kernel modules imported, so each patch is in place. :meth:`Runner.prepare` then

1. lets every family check what it checks once (:meth:`Runner.check_lookup`: the MoE family asks
   SGLang's own, patched, ``try_get_optimal_moe_config`` for every fused-MoE case and records
   whether it returns the plan's config: a case whose seam does not deliver the plugin's answer
   FAILs, so a PASS means the server gets that config);
2. compiles every case's kernels in parallel processes (:func:`~sglang_consumer_gpu.measure.
   compile.precompile`; about 4 s per fused-MoE kernel per core), so the cases compile nothing.

:meth:`Runner.execute` runs one case: its family's run (``case.run.execute``: fused MoE through
:class:`~sglang_consumer_gpu.measure.moe.MoeLayer`, attention through SGLang's own patched
launchers, the int8 GEMM through :func:`~sglang_consumer_gpu.measure.int8.check_case`) on
NaN-poisoned outputs, compared with a float32/float64 reference within the engine's bounds
(:meth:`Runner.verdict`). The safety net's decisions in this process are watched around every
case: a case of the plugin's own choices that needed it FAILs (the plugin's configs must fit by
themselves); a safety case PASSes only if the guard fitted its kernel and the result matches
(:meth:`Runner.guard_verdict`).
"""

from __future__ import annotations

import contextlib
import importlib
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from sglang_consumer_gpu.families.cases import FAIL, PASS, SKIP, Case, Result
from sglang_consumer_gpu.measure.common import Check
from sglang_consumer_gpu.selftest.plan import Plan

Progress = Callable[[int, str], Any]  # (total, description) -> a bar with update(n) and close()


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:400]


class Runner:
    """See the module docstring. ``workers``: compile processes (default: cores - 1);
    ``device``: "cuda", or "cpu" under Triton's interpreter (``TRITON_INTERPRET=1``, the
    CPU tests: nothing is precompiled there)."""

    def __init__(
        self,
        plan: Plan,
        *,
        workers: int | None = None,
        progress: Progress | None = None,
        device: str = "cuda",
    ) -> None:
        self.plan, self.spec, self.workers, self.progress, self.device = (
            plan,
            plan.spec,
            workers,
            progress,
            device,
        )
        self.lookup: dict[str, str] = {}
        self.compiled: dict[str, str] = {}
        self.compile_seconds = 0.0
        self.compile_error: str | None = None
        self.patches: dict[str, str] = {}
        self.safety: dict[str, str] = {}
        self.triton_limit: int | None = None
        self._gen: Any = None
        self._before = 0  # safety-net decisions in this process before the current case

    # -- setting up
    def activate(self) -> None:
        """The plugin as a server process has it (see the module docstring)."""
        from sglang_consumer_gpu import settings
        from sglang_consumer_gpu.activation import activate
        from sglang_consumer_gpu.patching import registry

        activate("selftest")
        for name in _kernel_modules():
            with contextlib.suppress(Exception):  # an SGLang without it: its cases FAIL saying so
                importlib.import_module(name)
        # Re-evaluated for the plan's spec: a patch judged when SGLang was first imported,
        # before this spec was in force, gets its verdict for this GPU now.
        registry.apply_loaded(None if settings.plugin_enabled() else f"{settings.OFF_SWITCH}=0")
        if any(c.area == "safety" and c.run is not None for c in self.plan.cases):
            from sglang_consumer_gpu.families import safety_net

            try:
                self.safety = safety_net.install()
            except Exception as exc:  # its cases FAIL saying so
                self.safety = {"safety-net": f"not installed: {_error_line(exc)}"}
        from sglang_consumer_gpu.selftest.live import triton_limit

        self.patches = {name: r.status.value for name, r in registry.results().items()}
        self.triton_limit = triton_limit() if self.device == "cuda" else None

    def prepare(self) -> None:
        self.check_lookup()
        self.compile()

    def check_lookup(self) -> None:
        """What each family checks once before its cases run (the MoE family: SGLang's patched
        lookup against every config the plan runs, into :attr:`lookup`)."""
        from sglang_consumer_gpu.families import FAMILIES

        for family in FAMILIES:
            family.selftest_prepare(self, [c for c in self.plan.runnable if c.area == family.name])

    def compile(self) -> None:
        from sglang_consumer_gpu.measure.compile import precompile

        jobs = self.plan.jobs()
        if not jobs or self.device != "cuda":
            return
        t0 = time.perf_counter()
        bar = self.progress(len(jobs), "selftest: compiling") if self.progress else None
        try:
            self.compiled = precompile(jobs, self.workers, on_done=bar.update if bar else None)
        except Exception as exc:  # a worker died (out of memory, a crash): the cases compile as they run
            self.compile_error = _error_line(exc)
        finally:
            if bar is not None:
                bar.close()
        self.compile_seconds = time.perf_counter() - t0

    def compile_summary(self) -> dict[str, Any]:
        """:func:`~sglang_consumer_gpu.measure.compile.describe` of the compile phase. The safety
        cases' tiles do not fit by design: in a worker without the safety net their warm-up
        launch fails (OutOfResources) after the kernel is in Triton's cache, so their outcomes
        are listed apart (``safety_case_jobs``) and not counted as failures."""
        from sglang_consumer_gpu.measure.compile import describe

        guarded = {j.key for c in self.plan.runnable if getattr(c.run, "guarded", False) for j in c.jobs()}
        out = describe({k: v for k, v in self.compiled.items() if k not in guarded})
        out["safety_case_jobs"] = {k: v for k, v in self.compiled.items() if k in guarded}
        out["seconds"] = round(self.compile_seconds, 1)
        out["workers"] = self.workers
        if self.compile_error:
            out["error"] = f"the parallel compile stopped ({self.compile_error}); cases compiled as they ran"
        return out

    # -- running
    def execute(self, case: Case) -> Result:
        if case.error is not None:
            return Result(case, FAIL, case.error)
        if case.skip is not None or case.run is None:
            return Result(case, SKIP, case.skip or "nothing to run")
        from sglang_consumer_gpu.safety import state

        before = self._before = len(state.local())
        t0 = time.perf_counter()
        try:
            result = self._execute(case)
        except Exception as exc:
            result = Result(case, FAIL, _error_line(exc), detail={"trace": traceback.format_exc()[-1500:]})
        finally:
            self._free()
        result.seconds = time.perf_counter() - t0
        new = state.local()[before:]
        guarded = getattr(case.run, "guarded", False)
        if new and not guarded and result.status == PASS:
            result.status = FAIL
            result.reason = f"the plugin's choice needed the safety net: {new[0].message[:300]}"
        if new:
            result.detail["safety_net"] = [iv.message[:400] for iv in new]
        return result

    def _free(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _execute(self, case: Case) -> Result:
        if case.run is None:
            raise TypeError(f"case {case.name} has nothing to run")
        return case.run.execute(self, case)

    def generator(self) -> Any:
        """The run's seeded torch generator on the device (made at first use)."""
        import torch

        if self._gen is None:
            self._gen = torch.Generator(device=self.device).manual_seed(0)
        return self._gen

    def verdict(self, case: Case, check: Check, **detail: Any) -> Result:
        if check.ok:
            reason = f"{check.metric} {check.error:.2e} <= {check.bound:.2e}"
        elif check.unwritten:
            reason = f"{check.unwritten} output elements not written (NaN poison left) or not finite"
        else:
            reason = f"{check.metric} {check.error:.2e} > bound {check.bound:.2e}"
        return Result(case, PASS if check.ok else FAIL, reason, check.error, check.bound,
                      detail={**check.detail, **detail})  # fmt: skip

    def guard_verdict(self, result: Result, kernel: str) -> Result:
        """A safety case passes only if the guard fitted ``kernel`` (and the result matched)."""
        from sglang_consumer_gpu.safety import state

        new = state.local()[self._before :]
        fitted = [iv for iv in new if iv.kernel == kernel and iv.outcome == state.FITTED]
        if result.status == PASS and not fitted:
            limit = (
                f"the {self.triton_limit:,} B Triton reports here"
                if self.triton_limit
                else "this device (no limit)"
            )
            return Result(result.case, SKIP, f"the kernel fit {limit}: the safety net had nothing to do",
                          result.error, result.bound, detail=result.detail)  # fmt: skip
        if fitted:
            iv = fitted[-1]
            result.detail["fitted"] = {"before": iv.before, "after": iv.after, "required": iv.required,
                                       "fitted": iv.fitted, "limit": iv.limit}  # fmt: skip
            if result.status == PASS:
                result.reason = (
                    f"completed through the safety net ({iv.required:,} B -> {iv.fitted:,} B <= {iv.limit:,} B, "
                    f"{', '.join(f'{k}={v}' for k, v in iv.after.items())}); {result.reason}"
                )
        return result

def _kernel_modules() -> list[str]:
    """SGLang modules imported up front, so that every patch of them is in place before a case runs."""
    from sglang_consumer_gpu.families import FAMILIES

    return [m for f in FAMILIES for m in f.kernel_modules]


@contextlib.contextmanager
def session(
    plan: Plan, *, workers: int | None = None, progress: Progress | None = None, device: str = "cuda"
) -> Iterator[Runner]:
    """A :class:`Runner` with every plugin decision in this process made for the plan's spec."""
    from sglang_consumer_gpu.hardware import override_spec

    with override_spec(plan.spec):
        runner = Runner(plan, workers=workers, progress=progress, device=device)
        runner.activate()
        yield runner
