"""The safety net: SGLang's Triton kernels are fitted to shared memory when they compile, not when they fail.

Where Triton fails: a launch looks the compiled kernel up in the
JITFunction's per-device cache (``kernel_cache[key]``, ``key`` from the
argument specialization and options) and, on a miss, compiles it in
``JITFunction._do_compile``. The first launch of the compiled kernel loads it
(``CompiledKernel._init_handles``), and that is where Triton compares
``metadata.shared`` with the device's ``max_shared_mem`` and raises
``OutOfResources`` (Triton 3.6 and 3.8 alike).

What the guard does, in :func:`build_compile_guard`'s replacement for
``_do_compile``, for kernels defined in SGLang modules only
(:data:`GUARDED_PREFIXES`):

1. compile as Triton would; if ``metadata.shared`` fits the device's
   ``max_shared_mem`` (the same number Triton checks), store and return it:
   nothing else happens;
2. otherwise compile the variants of :func:`~.rules.variants` in order (fewer
   pipeline stages, then the kernel's shrink rule at one stage) and store the
   first that fits *under the original key*. Every later launch of this
   specialization finds it in Triton's own cache: the hot path is Triton's,
   untouched, and the search runs once per specialization and device;
3. if nothing fits, store the original kernel with a launch error that says
   which kernel, how many bytes it needs and has, what was tried and what the
   user can do (:class:`SharedMemoryError`, a subclass of ``OutOfResources``,
   so code that catches Triton's error, like SGLang's sparse-MLA tile fallback
   or Triton's autotuner, still does).

Decisions are remembered per kernel configuration (:data:`_decisions`): a
new specialization of the same configuration (another batch size whose
integer arguments specialize differently) tries the remembered variant first,
one compile. One WARNING line per kernel and outcome; every decision goes to
:mod:`.state` for ``doctor``.

Autotuned kernels: while Triton's autotuner benchmarks its configs
(:func:`autotuner_benchmark`, installed around ``Autotuner._bench``), a config
that does not fit is left to fail, as the autotuner expects (it skips it), and
is not cached; if every config failed, the autotuner launches its first one,
which then compiles outside the benchmark and is fitted here.

CUDA graphs: the search only compiles and reads one device attribute; it
launches nothing, allocates nothing and never synchronizes, so it is as safe
inside a stream capture as Triton's own first-launch compile. SGLang's graph
runners also run every captured shape twice eagerly first
(``full_cuda_graph_backend.capture_one``: "Two warmups so kernels are loaded
and one-time setup is paid before capture"), so the decision is normally made
before capture begins.

Threads: compiles of one specialization are serialized by a per-key lock, and
the variant is compiled without touching the cache until it is chosen, so no
thread can pick up a kernel that does not fit. (With a Triton JIT hook or
async compile mode active, Triton's own ``_do_compile`` runs first and caches
the original for the moment before it is replaced.)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from triton.runtime.errors import OutOfResources

from sglang_consumer_gpu.errors import not_ours
from sglang_consumer_gpu.safety import rules, state

logger = logging.getLogger("sglang_consumer_gpu")

#: Module-name prefixes of the kernels the guard looks after: SGLang and sgl-kernel.
GUARDED_PREFIXES: tuple[str, ...] = ("sglang.", "sgl_kernel.", "sglang_kernel.")

_local = threading.local()
_lock = threading.Lock()
_key_locks: dict[tuple[int, Any, str], threading.Lock] = {}
#: Remembered winner per kernel configuration, with the bytes the original needed (see module docstring).
_decisions: dict[tuple[Any, ...], tuple[rules.Variant, int]] = {}
_warned: set[tuple[str, str, str]] = set()


class SharedMemoryError(OutOfResources):
    """``OutOfResources`` for shared memory, saying what the safety net tried and what to do."""

    def __init__(
        self, required: int, limit: int, name: str = "shared memory", kernel: str = "", detail: str = ""
    ):
        super().__init__(required, limit, name)
        self.kernel = kernel
        self.detail = detail

    def __str__(self) -> str:
        return f"out of resource: {self.name}, Required: {self.required}, Hardware limit: {self.limit}. {self.detail}"

    def __reduce__(self) -> Any:
        return (type(self), (self.required, self.limit, self.name, self.kernel, self.detail))


def _raise(err: BaseException, *args: Any, **kwargs: Any) -> None:
    raise copy.deepcopy(err)


def is_guarded(module: str) -> bool:
    return module.startswith(GUARDED_PREFIXES)


@contextlib.contextmanager
def autotuner_benchmark() -> Iterator[None]:
    """Inside, kernels that do not fit are left to fail (Triton's autotuner skips them)."""
    _local.bench = getattr(_local, "bench", 0) + 1
    try:
        yield
    finally:
        _local.bench -= 1


def _benchmarking() -> bool:
    return getattr(_local, "bench", 0) > 0


def device_limit(device: Any) -> int | None:
    """The shared memory per block Triton checks launches against; None when the
    active driver cannot say (the compile-only oracle's driver): then the guard stands aside."""
    try:
        from triton.runtime.driver import driver

        utils = getattr(driver.active, "utils", None)
        if utils is None:
            return None
        return int(utils.get_device_properties(device)["max_shared_mem"])
    except Exception:
        return None


def _key_lock(jit: Any, device: Any, key: str) -> threading.Lock:
    with _lock:
        return _key_locks.setdefault((id(jit), device, key), threading.Lock())


def _shared(kernel: Any) -> int | None:
    value = getattr(getattr(kernel, "metadata", None), "shared", None)
    return value if isinstance(value, int) else None


def _compiles_directly(jit: Any) -> bool:
    """Whether the guard may compile without Triton's ``_do_compile`` (no JIT hook, no async compile)."""
    try:
        from triton import knobs
        from triton.runtime import _async_compile

        return (
            knobs.runtime.jit_cache_hook is None
            and knobs.runtime.jit_post_compile_hook is None
            and _async_compile.active_mode.get() is None
            and hasattr(jit, "ASTSource")
            and hasattr(jit, "compile")
        )
    except Exception:
        return False


@dataclasses.dataclass
class _Launch:
    """One ``_do_compile`` call: everything needed to compile a variant of it."""

    jit: Any
    key: str
    signature: Any
    device: Any
    constexprs: dict[Any, Any]
    options: Any
    attrs: Any

    @property
    def name(self) -> str:
        return getattr(self.jit.fn, "__name__", "?")

    @property
    def module(self) -> str:
        return str(getattr(self.jit, "module", ""))

    def by_name(self) -> dict[str, Any]:
        names = self.jit.arg_names
        return {names[p[0]]: v for p, v in self.constexprs.items() if len(p) == 1 and p[0] < len(names)}

    def before(self) -> dict[str, Any]:
        tiles = {k: v for k, v in self.by_name().items() if k.startswith("BLOCK") and isinstance(v, int)}
        return {"num_stages": self.options.num_stages, "num_warps": self.options.num_warps, **tiles}

    def coarse_key(self, limit: int) -> tuple[Any, ...]:
        """The kernel configuration without Triton's alignment specialization."""
        target = self.jit.device_caches[self.device][2]
        sig = tuple(sorted((str(k), str(v)) for k, v in dict(self.signature).items()))
        consts = tuple(sorted((k, repr(v)) for k, v in self.by_name().items()))
        options = (self.options.num_warps, self.options.num_stages, getattr(self.options, "num_ctas", 1))
        return (self.module, self.name, repr(target), limit, sig, consts, options)

    def compile(self, variant: rules.Variant | None = None) -> Any:
        """Compile (a variant of) this launch without touching the kernel cache."""
        constexprs, options = self.constexprs, self.options
        if variant is not None:
            constexprs = dict(constexprs)
            for name, value in variant.changes:
                constexprs[(self.jit.arg_names.index(name),)] = value
            options = dataclasses.replace(options, num_stages=variant.num_stages)
        _, _, target, _, _ = self.jit.device_caches[self.device]
        src = self.jit.ASTSource(self.jit, self.signature, constexprs, self.attrs)
        return self.jit.compile(src, target=target, options=options.__dict__)


def build_compile_guard(original: Callable[..., Any]) -> Callable[..., Any]:
    """The replacement for ``JITFunction._do_compile`` (see the module docstring)."""

    def _do_compile(
        self: Any,
        key: str,
        signature: Any,
        device: Any,
        constexprs: Any,
        options: Any,
        attrs: Any,
        warmup: bool,
    ) -> Any:
        if not is_guarded(str(getattr(self, "module", ""))):
            return _call(original, self, key, signature, device, constexprs, options, attrs, warmup)
        launch = _Launch(self, key, signature, device, dict(constexprs), options, attrs)
        with _key_lock(self, device, key):
            kernel_cache = self.device_caches[device][0]
            cached = kernel_cache.get(key)
            if cached is not None:  # another thread compiled it while this one waited
                return cached
            limit = device_limit(device)
            direct = limit is not None and _compiles_directly(self)
            if direct:
                remembered = None if _benchmarking() else _decisions.get(launch.coarse_key(limit))
                if remembered is not None:
                    kernel = _try(launch, remembered[0], limit)
                    if kernel is not None:
                        kernel_cache[key] = kernel
                        _note_fitted(launch, remembered[0], remembered[1], kernel, limit)
                        return kernel
                kernel = _call(launch.compile)
            else:
                kernel = _call(original, self, key, signature, device, constexprs, options, attrs, warmup)
            shared = _shared(kernel)
            if limit is None or shared is None or shared <= limit:
                if direct:
                    kernel_cache[key] = kernel
                return kernel
            if _benchmarking():  # the autotuner skips it; a later launch outside the benchmark compiles anew
                kernel_cache.pop(key, None)
                return kernel
            kernel = _rescue(launch, kernel, shared, limit)
            kernel_cache[key] = kernel
            return kernel

    return _do_compile


def build_bench_marker(original: Callable[..., Any]) -> Callable[..., Any]:
    """The replacement for ``Autotuner._bench``: marks the benchmark for the compile guard."""

    def _bench(self: Any, *args: Any, config: Any, **meta: Any) -> Any:
        with autotuner_benchmark():
            return _call(original, self, *args, config=config, **meta)

    return _bench


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run Triton's (or SGLang's) own code; its exceptions are its own, not the patch's."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise not_ours(exc) from None


def _try(launch: _Launch, variant: rules.Variant, limit: int) -> Any | None:
    try:
        kernel = launch.compile(variant)
    except Exception as exc:  # a variant the kernel rejects (a static assert on the tile): skip it
        logger.debug("sglang-consumer-gpu: %s variant %s did not compile: %s", launch.name, variant, exc)
        return None
    shared = _shared(kernel)
    return kernel if shared is not None and shared <= limit else None


def _rescue(launch: _Launch, kernel: Any, required: int, limit: int) -> Any:
    rule = rules.rule_for(launch.module, launch.name)
    tried: list[str] = []
    smallest = required
    for variant in rules.variants(launch.options.num_stages, launch.by_name(), rule, launch.jit.arg_names):
        try:
            candidate = launch.compile(variant)
        except Exception as exc:
            logger.debug("sglang-consumer-gpu: %s variant %s did not compile: %s", launch.name, variant, exc)
            continue
        shared = _shared(candidate)
        if shared is None:
            continue
        tried.append(f"{variant.describe(launch.before())}: {shared} B")
        smallest = min(smallest, shared)
        if shared <= limit:
            _decisions[launch.coarse_key(limit)] = (variant, required)
            _note_fitted(launch, variant, required, candidate, limit)
            return candidate
    return _fail(launch, kernel, required, limit, tried, smallest)


def _note_fitted(launch: _Launch, variant: rules.Variant, required: int, kernel: Any, limit: int) -> None:
    before = launch.before()
    fitted = _shared(kernel)
    same = "results are unchanged (fewer pipeline stages only)"
    rounding = "results agree to float rounding (a smaller tile of the same sum)"
    message = (
        f"sglang-consumer-gpu: safety net: {launch.name} ({launch.module}) needs {required} B of shared memory "
        f"per block, this GPU allows {limit} B; running it with {variant.describe(before)}: {fitted} B; "
        f"{rounding if variant.changes else same}. Further configurations of this kernel are fitted "
        "without a warning; `sglang-consumer-gpu doctor` lists them."
    )
    state.record(
        state.Intervention(
            kernel=launch.name,
            module=launch.module,
            outcome=state.FITTED,
            before=before,
            after=variant.to_dict(),
            required=required,
            fitted=fitted,
            limit=limit,
            message=message,
        )
    )
    _warn_once(launch, state.FITTED, message)


def _fail(launch: _Launch, kernel: Any, required: int, limit: int, tried: list[str], smallest: int) -> Any:
    attempts = "; ".join(tried) if tried else "no variant (one stage already, no shrink rule)"
    detail = (
        f"sglang-consumer-gpu's safety net found no variant of {launch.name} ({launch.module}) that fits "
        f"{limit} B (launch: {_fmt(launch.before())}; tried: {attempts}; smallest {smallest} B). "
        f"What you can do: {rules.hint(launch.module, launch.name)}."
    )
    err = SharedMemoryError(required, limit, kernel=launch.name, detail=detail)
    # Both ways a launch reaches the kernel: ``run`` (Triton 3.6 without a launch
    # hook) and ``_init_handles`` (``launch_metadata``; Triton 3.8's hook chain is never None).
    kernel._run = kernel._init_handles = functools.partial(_raise, err)
    state.record(
        state.Intervention(
            kernel=launch.name,
            module=launch.module,
            outcome=state.FAILED,
            before=launch.before(),
            after={},
            required=required,
            fitted=None,
            limit=limit,
            message=str(err),
        )
    )
    _warn_once(launch, state.FAILED, f"sglang-consumer-gpu: safety net: {err}")
    return kernel


def _fmt(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _warn_once(launch: _Launch, outcome: str, message: str) -> None:
    with _lock:
        key = (launch.module, launch.name, outcome)
        if key in _warned:
            return
        _warned.add(key)
    logger.warning("%s", message)
