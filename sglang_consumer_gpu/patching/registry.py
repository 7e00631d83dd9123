"""Applies patches and remembers what happened to each one.

The plugin must never be the reason SGLang does not start: every step of
applying a patch is inside a try/except that records FAILED with the
exception text and moves on to the next patch. At call time the installed
replacement is guarded the same way: a call it raises on is answered by
SGLang's own function (and logged); the patch stays on for the other calls,
so one bad input cannot switch it off for the rest of the process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from sglang_consumer_gpu import settings, versions
from sglang_consumer_gpu.errors import is_not_ours
from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, PatchResult, Seam, Status
from sglang_consumer_gpu.patching.decide import READY, Decision, decide, not_needed

__all__ = ["Patch", "PatchResult", "Seam", "Status"]

logger = logging.getLogger("sglang_consumer_gpu")

#: Attribute set on every replacement we install: (patch name, original).
MARKER = "__sglang_consumer_gpu_patch__"

_lock = threading.RLock()
_patches: dict[str, Patch] = {}
_results: dict[str, PatchResult] = {}


#: Distinct call-time errors logged per patch (more are counted, not logged).
_MAX_LOGGED_ERRORS = 5


def register(patch: Patch) -> None:
    """Add a patch (the built-in ones register themselves via patches.catalog)."""
    with _lock:
        _patches[patch.name] = patch
        seam = patch.current_seam()
        where = seam.module if seam else patch.target
        _results.setdefault(patch.name, PatchResult(Status.PENDING, f"waiting for import of {where}"))


def patches() -> list[Patch]:
    return list(_patches.values())


def results() -> dict[str, PatchResult]:
    with _lock:
        return dict(_results)


def _resolve(module: ModuleType, attr: str) -> tuple[Any, str, Any]:
    """Return (owner object, final attribute name, current value) for a dotted attr."""
    owner: Any = module
    parts = attr.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    return owner, parts[-1], getattr(owner, parts[-1])


def _rebind(original: Any, replacement: Any) -> int:
    """Point every loaded sglang module that imported ``original`` by name at
    ``replacement`` (``from x import f`` copies the reference)."""
    count = 0
    for name, mod in list(sys.modules.items()):
        if not name.startswith("sglang") or mod is None:
            continue
        d = getattr(mod, "__dict__", None)
        if not d:
            continue
        for key, value in list(d.items()):
            if value is original:
                setattr(mod, key, replacement)
                count += 1
    return count


#: Run at the first call of any installed replacement, then forgotten (activation's summary line,
#: when the entry point ran before SGLang configured logging).
_at_first_call: list[Callable[[], None]] = []


def at_first_call(fn: Callable[[], None]) -> None:
    """Run ``fn`` once, when an installed replacement is first called in this process."""
    with _lock:
        if fn not in _at_first_call:
            _at_first_call.append(fn)


def _run_first_call_hooks() -> None:
    with _lock:
        hooks, _at_first_call[:] = list(_at_first_call), []
    for fn in hooks:
        try:
            fn()
        except Exception as exc:  # a log line must never break SGLang's call
            logger.debug("sglang-consumer-gpu: first-call hook failed: %s", exc)


def _guard(patch: Patch, original: Callable[..., Any], replacement: Callable[..., Any]) -> Callable[..., Any]:
    """Call ``replacement`` only while the current GPU needs the patch; any call
    it raises on is answered by ``original`` (SGLang's own code)."""

    errors: dict[str, int] = {}  # "Type: message" -> count

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _at_first_call:
            _run_first_call_hooks()
        try:
            spec = current_spec()
            use = spec is not None and patch.needed_on(spec)
        except Exception:
            use = False
        if not use:
            return original(*args, **kwargs)
        try:
            return replacement(*args, **kwargs)
        except Exception as exc:
            if is_not_ours(exc):
                raise
            _record_call_failure(patch, errors, exc)
            return original(*args, **kwargs)

    setattr(guarded, MARKER, (patch.name, original))
    return guarded


def _record_call_failure(patch: Patch, errors: dict[str, int], exc: Exception) -> None:
    """Count a call the replacement raised on; log each distinct error once."""
    what = f"{type(exc).__name__}: {str(exc)[:300]}"
    with _lock:
        first = what not in errors
        if first and len(errors) >= _MAX_LOGGED_ERRORS:
            what, first = "(other errors)", "(other errors)" not in errors
        errors[what] = errors.get(what, 0) + 1
        current = _results.setdefault(patch.name, PatchResult(Status.APPLIED))
        current.fallbacks = sum(errors.values())
        current.last_error = what
    if first:
        logger.warning(
            "sglang-consumer-gpu: patch %s raised %s for one call; SGLang's own %s answered it "
            "(the patch stays on for other calls)",
            patch.name,
            what,
            patch.target,
        )


def apply_patch(patch: Patch, module: ModuleType | None = None) -> PatchResult:
    """Apply one patch now and record the result. Never raises. A result is
    logged when it is new: trying again (entry point after import watcher,
    ``apply_all``) does not repeat a warning."""
    with _lock:
        previous = _results.get(patch.name)
        try:
            result = _apply(patch, module)
        except Exception as exc:  # the plugin must never stop SGLang
            result = PatchResult(Status.FAILED, f"{type(exc).__name__}: {exc}")
        _results[patch.name] = result
    if previous is not None and (previous.status, previous.detail) == (result.status, result.detail):
        logger.debug("sglang-consumer-gpu: patch %s: still %s", patch.name, result.status.value)
    elif result.status is Status.APPLIED and not versions.has_plugin_group():
        # No load_plugins() in this SGLang, hence no summary line: say it per patch.
        logger.info("sglang-consumer-gpu: patch %s applied %s", patch.name, result.detail)
    elif result.status is Status.FAILED:
        logger.warning("sglang-consumer-gpu: patch %s failed and was skipped: %s", patch.name, result.detail)
    elif result.status is Status.TARGET_MISSING:
        logger.warning(
            "sglang-consumer-gpu: patch %s skipped, target %s missing (%s); SGLang's own code runs unchanged",
            patch.name,
            patch.target,
            result.detail,
        )
    elif result.status is Status.TARGET_CHANGED:
        logger.warning(
            "sglang-consumer-gpu: patch %s skipped: %s; SGLang's own code runs unchanged",
            patch.name,
            result.detail,
        )
    else:
        logger.debug("sglang-consumer-gpu: patch %s: %s %s", patch.name, result.status.value, result.detail)
    return result


class _Live:
    """The probe of :func:`~sglang_consumer_gpu.patching.decide.decide` for an imported target;
    keeps what it resolved for the installation."""

    def __init__(self, module: ModuleType | None) -> None:
        self.module = module
        self.found: tuple[Any, str, Any] | None = None  # (owner, attribute name, current value)

    def target(self, patch: Patch, seam: Seam) -> Decision | None:
        module = self.module if self.module is not None else sys.modules.get(seam.module)
        if module is None:
            try:
                module = importlib.import_module(seam.module)
            except ImportError as exc:
                return Decision(Status.TARGET_MISSING, f"cannot import {seam.module}: {exc}")
        self.module = module
        try:
            owner, name, current = _resolve(module, seam.attr)
        except AttributeError:
            return _missing(patch, seam, module)
        marker = getattr(current, MARKER, None)
        if marker is not None and marker[0] == patch.name:
            return Decision(Status.APPLIED, _results[patch.name].detail if patch.name in _results else "")
        changed = _signature_change(seam, current)
        if changed:
            return Decision(Status.TARGET_CHANGED, changed)
        self.found = (owner, name, current)
        return None

    def upstream_fixed(self, patch: Patch, seam: Seam, spec: GpuSpec) -> str | None:
        return "the running SGLang already handles this" if patch.upstream_fixed(self.module) else None


def _apply(patch: Patch, module: ModuleType | None) -> PatchResult:
    spec = current_spec()
    probe = _Live(module)
    decision = decide(patch, spec, probe)
    if decision.status is not READY or probe.found is None or spec is None:
        return PatchResult(decision.status, decision.detail)
    owner, name, current = probe.found
    replacement = _guard(patch, current, patch.build(current, probe.module))
    setattr(owner, name, replacement)
    rebound = _rebind(current, replacement) if owner is probe.module else 0
    return PatchResult(
        Status.APPLIED, f"for {spec.name} ({spec.arch_name}); {rebound} re-bound import(s){decision.detail}"
    )


def _missing(patch: Patch, seam: Seam, module: ModuleType) -> Decision:
    """The target attribute is absent: say whether SGLang binds it only under a
    condition that is false here (nothing to patch), or it has really moved."""
    from sglang_consumer_gpu.patching.static import check_source

    source = None
    with contextlib.suppress(OSError, TypeError):
        source = inspect.getsource(module)
    check = check_source(seam, source) if source is not None else None
    if check is not None and check.ok and check.condition:
        return Decision(
            Status.NOT_NEEDED,
            f"SGLang defines {seam.attr} only when `{check.condition}` holds, which is false in this "
            "process (no CUDA device); on the GPU itself the patch applies",
        )
    spec = current_spec()
    if spec is not None and not patch.needed_on(spec):
        return not_needed(patch, spec)
    return Decision(Status.TARGET_MISSING, f"{seam.target} not found in SGLang {versions.sglang_version()}")


def _signature_change(seam: Seam, current: Any) -> str:
    """How ``current``'s parameters differ from what the patch expects ("" if not)."""
    if seam.params is None:
        return ""
    try:
        params = inspect.signature(current).parameters.values()
    except (TypeError, ValueError):
        return ""
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    have = tuple(prefix.get(p.kind, "") + p.name for p in params)
    if have == seam.params:
        return ""
    return f"{seam.target}({', '.join(have)}) has changed; the patch expects ({', '.join(seam.params)})"


def installed(patch: Patch) -> bool:
    """Whether the patch's replacement is what the target attribute holds now."""
    seam = patch.current_seam()
    module = sys.modules.get(seam.module) if seam else None
    if seam is None or module is None:
        return False
    try:
        _, _, current = _resolve(module, seam.attr)
    except AttributeError:
        return False
    marker = getattr(current, MARKER, None)
    return marker is not None and marker[0] == patch.name


def apply_loaded(disabled_reason: str | None = None, *, sglang_only: bool = False) -> dict[str, PatchResult]:
    """Apply every registered patch whose target module is already imported
    (``sglang_only``: leave the Triton-level patches as they are)."""
    for patch in patches():
        if sglang_only and patch.triton_only:
            continue
        if disabled_reason is not None:
            with _lock:
                _results[patch.name] = PatchResult(Status.DISABLED, disabled_reason)
            continue
        current = _results.get(patch.name)
        if current is not None and current.status is Status.APPLIED:
            continue
        seam = patch.current_seam()
        if seam is not None and seam.module in sys.modules:
            apply_patch(patch, sys.modules[seam.module])
    return results()


def apply_all(disabled_reason: str | None = None) -> dict[str, PatchResult]:
    """Import every target and apply (``doctor --import`` and tests use this;
    SGLang itself is patched lazily, as its modules load). With
    ``disabled_reason`` nothing is imported or applied."""
    for patch in patches():
        if disabled_reason is not None:
            with _lock:
                _results[patch.name] = PatchResult(Status.DISABLED, disabled_reason)
            continue
        current = _results.get(patch.name)
        if current is None or current.status is not Status.APPLIED:
            apply_patch(patch)
    return results()


def reapply_loaded() -> dict[str, PatchResult]:
    """Decide every loaded patch of SGLang again, for the GPU decisions are made for now
    (``hardware.current_spec``: a virtual GPU's spec inside one), the off switch honoured."""
    switch = settings.switch()
    return apply_loaded(None if switch.enabled else f"disabled by {switch.describe()}", sglang_only=True)


@contextlib.contextmanager
def unpatched() -> Iterator[None]:
    """SGLang's own code inside the block: every plugin patch of SGLang is
    reverted on entry and decided again (for the modules loaded by then) on exit.
    The Triton-level safety net is process state, not a capability answer:
    it stays as it was (its guard reads the GPU spec at compile time)."""
    with _lock:
        revert_all(sglang_only=True)
        try:
            yield
        finally:
            reapply_loaded()


def revert_all(*, sglang_only: bool = False) -> None:
    """Undo every installed replacement (tests and virtual-GPU contexts;
    ``sglang_only``: leave the Triton-level patches installed)."""
    with _lock:
        for patch in patches():
            if sglang_only and patch.triton_only:
                continue
            seam = patch.current_seam()
            module = sys.modules.get(seam.module) if seam else None
            if seam is None or module is None:
                continue
            try:
                owner, name, current = _resolve(module, seam.attr)
            except AttributeError:
                continue
            marker = getattr(current, MARKER, None)
            if marker is not None and marker[0] == patch.name:
                original = marker[1]
                setattr(owner, name, original)
                if owner is module:
                    _rebind(current, original)
            _results[patch.name] = PatchResult(
                Status.PENDING, f"reverted; waiting for import of {seam.module}"
            )


def summary() -> str:
    """One line: what was applied, what was not and why (for the INFO log)."""
    res = results()
    if not res:
        return "no patches registered"
    by_status: dict[str, list[str]] = {}
    for name, r in res.items():
        by_status.setdefault(r.status.value, []).append(name)
    return "; ".join(f"{status}: {', '.join(sorted(names))}" for status, names in sorted(by_status.items()))
