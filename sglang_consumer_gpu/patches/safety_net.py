"""Safety net: SGLang's Triton kernels that overflow shared memory run with fewer stages or a smaller tile.

What it changes: Triton's ``JITFunction._do_compile`` (the compile step of a
launch whose specialization is not cached yet) and ``Autotuner._bench``. For
kernels defined in SGLang (and sgl-kernel) modules only, a compiled kernel
whose ``metadata.shared`` exceeds the device's ``max_shared_mem`` is replaced,
under the same cache key, by the first variant that fits: fewer pipeline
stages, then a registered safe shrink rule (fused-MoE ``BLOCK_SIZE_K``,
Triton attention ``BLOCK_N``) at one stage; if none fits, the launch raises
an ``OutOfResources`` that names the kernel, the bytes, what was tried and
what to do. ``_bench`` is only marked, so that configs the autotuner is
timing are left to fail as it expects. The logic and the reasons are in
:mod:`sglang_consumer_gpu.safety.guard`; the rules in
:mod:`sglang_consumer_gpu.safety.rules`, their table in each family's patch module
(``SHRINK_RULES``, ``NUMERICS_FIXED``: :func:`rule_book`).

Why: every SGLang release adds Triton kernels tuned on data-center GPUs, and
patching them one at a time lags. Open reports on ~99 KB GPUs: the
deterministic-inference persistent matmul (fp16 128x256x64, 3 stages:
106,496 B against 101,376 on sm_86/89/120, oracle), fused MoE for Mistral
Small 4 on sm_120, GLM-4.5V fp8 MoE during CUDA-graph capture. SGLang itself
does this for one kernel (``kernels/ops/attention/dsa/
triton_sparse_mla_prefill.py`` catches ``OutOfResources`` and steps tiles
down). The guard decides at compile time instead, so Triton's launch hot path
is unchanged.

Versions: Triton >= 3.6 (3.6 on the device machine, 3.8 in CI: both have
``_do_compile(self, key, signature, device, constexprs, options, attrs,
warmup)``, ``device_caches[device] = (kernel_cache, ..., target, backend,
binder)`` and the shared-memory check in ``CompiledKernel._init_handles``).
Any SGLang: it patches Triton. The anchors are checked when the patch is
built; if they moved, the patch reports "failed" with the reason and Triton
runs unchanged.

Upstream-fix detection: if Triton's ``CompiledKernel._init_handles`` no
longer compares ``metadata.shared`` with ``max_shared_mem``, the failure this
answers no longer happens at launch and the patch reports "already fixed
upstream".
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, Seam

DO_COMPILE_PARAMS = ("self", "key", "signature", "device", "constexprs", "options", "attrs", "warmup")

#: SGLang's deterministic-inference kernels (0.5.3+): their tiles are part of the numerics contract.
BATCH_INVARIANT = Seam(">=0.5.3", "sglang.srt.batch_invariant_ops.batch_invariant_ops", "matmul_persistent")
NUMERICS_FIXED: dict[str, tuple[str, ...]] = {
    kernel: (BATCH_INVARIANT.module,)
    for kernel in (
        "matmul_kernel_persistent",
        "bmm_kernel_persistent",
        "_log_softmax_kernel",
        "mean_kernel",
        "_rms_norm_kernel",
    )
}


def rule_book() -> Any:
    """Every patch module's ``SHRINK_RULES`` and ``NUMERICS_FIXED`` (each family declares the rules
    for its own kernels), as the guard's :class:`~sglang_consumer_gpu.safety.rules.RuleBook`."""
    import importlib

    from sglang_consumer_gpu.patching.catalog import builtin_patch_modules
    from sglang_consumer_gpu.safety.rules import RuleBook

    shrink: list[Any] = []
    fixed: dict[str, tuple[str, ...]] = {}
    for name in builtin_patch_modules():
        mod = importlib.import_module(name)
        shrink += getattr(mod, "SHRINK_RULES", ())
        for kernel, modules in getattr(mod, "NUMERICS_FIXED", {}).items():
            fixed[kernel] = (*fixed.get(kernel, ()), *modules)
    return RuleBook(tuple(shrink), fixed)


def _params(fn: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def _build_compile_guard(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    if _params(original) != DO_COMPILE_PARAMS:
        raise RuntimeError(
            f"Triton's JITFunction._do_compile takes {_params(original)}, not {DO_COMPILE_PARAMS}; "
            "the safety net is not installed"
        )
    from sglang_consumer_gpu.safety import guard, rules, state

    state.tree_id()  # SGLang's scheduler processes, started later, inherit it
    rules.install(rule_book())
    return guard.build_compile_guard(original)


def _build_bench_marker(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    params = inspect.signature(original).parameters
    if "config" not in params or params["config"].kind is not inspect.Parameter.KEYWORD_ONLY:
        raise RuntimeError(
            "Triton's Autotuner._bench no longer takes config=...; autotuned kernels are not marked"
        )
    from sglang_consumer_gpu.safety import guard

    return guard.build_bench_marker(original)


def upstream_fixed(module: ModuleType) -> bool:
    """True when Triton no longer checks shared memory when it loads a kernel."""
    try:
        from triton.compiler.compiler import CompiledKernel

        source = inspect.getsource(CompiledKernel._init_handles)
    except Exception:  # cannot tell: keep the patch (the guard checks the limit itself)
        return False
    return "max_shared" not in source


def needed_on(spec: GpuSpec) -> bool:
    return spec.is_low_smem


WHY = (
    "SGLang Triton kernels tuned on data-center GPUs fail at first launch on ~99 KB GPUs "
    "(OutOfResources, e.g. Required: 106496, Hardware limit: 101376 for the deterministic-inference matmul)"
)

PATCHES = [
    Patch(
        name="safety-net",
        module="triton.runtime.jit",
        attr="JITFunction._do_compile",
        why=WHY,
        build=_build_compile_guard,
        needed_on=needed_on,
        upstream_fixed=upstream_fixed,
        triton_versions=">=3.6",
        triton_only=True,
    ),
    Patch(
        name="safety-net-autotune",
        module="triton.runtime.autotuner",
        attr="Autotuner._bench",
        why="lets the safety net leave configs the autotuner is timing to fail, as the autotuner expects",
        build=_build_bench_marker,
        needed_on=needed_on,
        upstream_fixed=upstream_fixed,
        triton_versions=">=3.6",
        triton_only=True,
    ),
]


def install() -> dict[str, str]:
    """Register and apply the safety-net patches now, for scripts that do not go
    through the plugin's activation; returns each patch's status. Idempotent."""
    from sglang_consumer_gpu.patching import registry

    known = {p.name for p in registry.patches()}
    for patch in PATCHES:
        if patch.name not in known:
            registry.register(patch)
        if not registry.installed(patch):
            registry.apply_patch(patch)
    results = registry.results()
    return {p.name: results[p.name].status.value for p in PATCHES}
