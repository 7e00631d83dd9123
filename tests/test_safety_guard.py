"""The safety net on real Triton compiles with an emulated shared-memory limit (no GPU).

Kernels compile for real (sm_89 / sm_90); Triton's own launch path checks
``metadata.shared`` against the emulated driver's ``max_shared_mem`` and raises
``OutOfResources`` exactly as on a GPU (:mod:`sglang_consumer_gpu.emulation.no_gpu`).
SGLang's kernels are SGLang 0.5.23's, called through its own launchers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import triton
import triton.language as tl
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources

from sglang_consumer_gpu.emulation.no_gpu import emulated_gpu
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.hardware.current import override_spec
from sglang_consumer_gpu.patches import safety_net
from sglang_consumer_gpu.patching import registry
from sglang_consumer_gpu.patching.base import Status
from sglang_consumer_gpu.safety import guard, state

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
H100 = find_gpu("NVIDIA H100 80GB HBM3")
#: The device machine under the end-to-end harness's cap: sm_90 code, 101,376 bytes.
CAPPED_H200 = dataclasses.replace(find_gpu("NVIDIA H200"), smem_per_block_optin=101_376)
LIMIT = 101_376


@triton.jit
def _tile(a, b, c, M, N, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """A pipelined GEMM tile: its shared memory grows with num_stages (sm_89, fp16
    128x128x64: 32,768 B at 1-2 stages, 65,536 at 3, 98,304 at 4, 131,072 at 5)."""
    _tile_body(a, b, c, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit
def _broken(a, BLOCK: tl.constexpr):
    tl.store(a + tl.arange(0, BLOCK), undefined_name)  # noqa: F821  (a compile error on purpose)


def _big_configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=s)
        for s in (5, 6)
    ]


@triton.autotune(configs=_big_configs(), key=["K"])
@triton.jit
def _tuned_all_big(a, b, c, M, N, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    _tile_body(a, b, c, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.autotune(
    configs=[*_big_configs()[:1], triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3)],
    key=["K"],
)  # fmt: skip
@triton.jit
def _tuned_mixed(a, b, c, M, N, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    _tile_body(a, b, c, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, BLOCK_M, BLOCK_N, BLOCK_K)


@triton.jit
def _tile_body(a, b, c, K, s_am, s_ak, s_bk, s_bn, s_cm, s_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    rm = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k in range(0, K, BLOCK_K):
        x = tl.load(a + rm[:, None] * s_am + (k + rk)[None, :] * s_ak)
        y = tl.load(b + (k + rk)[:, None] * s_bk + rn[None, :] * s_bn)
        acc += tl.dot(x, y)
    tl.store(c + rm[:, None] * s_cm + rn[None, :] * s_cn, acc.to(tl.float16))


def _launch(kernel: Any, m: int = 1024, **meta: Any) -> Any:
    a = torch.empty(m, 1024, device="meta", dtype=torch.float16)
    b = torch.empty(1024, 1024, device="meta", dtype=torch.float16)
    return kernel[(8,)](a, b, a, m, 1024, 1024, *a.stride(), *b.stride(), *a.stride(), **meta)


def _tile_launch(m: int = 1024, **meta: Any) -> Any:
    defaults = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8}
    return _launch(_tile, m, **{**defaults, **meta})


def _safety_net_targets() -> Iterator[tuple[Any, Any, str, Any]]:
    """Each safety-net patch with the object and attribute it replaces, and what is there now."""
    for patch in safety_net.PATCHES:
        __import__(patch.module)
        yield (patch, *registry._resolve(sys.modules[patch.module], patch.attr))


@contextlib.contextmanager
def safety_net_installed() -> Iterator[None]:
    """Register and apply the two safety-net patches; afterwards put back exactly what was there."""
    saved = []
    for patch, owner, name, current in _safety_net_targets():
        saved.append(
            (
                patch,
                owner,
                name,
                current,
                registry._patches.get(patch.name),
                registry._results.get(patch.name),
            )
        )
        registry.register(patch)
        if not registry.installed(patch):
            result = registry.apply_patch(patch)
            assert result.status is Status.APPLIED, result
    try:
        yield
    finally:
        for patch, owner, name, value, known, result in saved:
            setattr(owner, name, value)
            for table, entry in ((registry._patches, known), (registry._results, result)):
                if entry is None:
                    table.pop(patch.name, None)
                else:
                    table[patch.name] = entry


@contextlib.contextmanager
def safety_net_removed() -> Iterator[None]:
    """Triton as it ships, whatever earlier tests (plugin activation) left installed."""
    saved = []
    for _, owner, name, current in _safety_net_targets():
        marker = getattr(current, registry.MARKER, None)
        if marker is not None:
            saved.append((owner, name, current))
            setattr(owner, name, marker[1])
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty state directory and empty safety-net memory; this test module's kernels guarded."""
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(state.TREE_ENV, "test-tree")
    monkeypatch.setattr(guard, "_decisions", {})
    monkeypatch.setattr(guard, "_warned", set())
    monkeypatch.setattr(state, "_records", {})
    monkeypatch.setattr(guard, "GUARDED_PREFIXES", (*guard.GUARDED_PREFIXES, _tile.module))
    return tmp_path


@pytest.fixture
def on_4090(fresh):
    with override_spec(RTX_4090), safety_net_installed(), emulated_gpu(RTX_4090) as launches:
        yield launches


def _spy(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[Any]:
    calls: list[Any] = []
    original = getattr(obj, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, spy)
    return calls


# --- stage step-down, memory, messages -------------------------------------------


def test_without_the_guard_triton_raises_at_the_emulated_limit(fresh):
    with (
        override_spec(RTX_4090),
        safety_net_removed(),
        emulated_gpu(RTX_4090),
        pytest.raises(OutOfResources, match="Required: 131072"),
    ):
        _tile_launch(num_stages=5)


def test_stage_step_down_runs_the_search_once(on_4090, monkeypatch, caplog):
    rescues = _spy(monkeypatch, guard, "_rescue")
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu"):
        for _ in range(3):
            _tile_launch(num_stages=5)
    assert [(x.num_stages, x.shared) for x in on_4090] == [(4, 98_304)] * 3
    assert len(rescues) == 1
    warnings = [r.getMessage() for r in caplog.records if "safety net" in r.getMessage()]
    assert len(warnings) == 1
    assert "_tile" in warnings[0] and "131072 B" in warnings[0] and "num_stages=4 (was 5)" in warnings[0]
    assert "results are unchanged" in warnings[0]
    [iv] = state.local()
    assert (iv.outcome, iv.required, iv.fitted, iv.limit, iv.after) == (
        "fitted",
        131_072,
        98_304,
        LIMIT,
        {"num_stages": 4},
    )


def test_fitted_kernel_sits_in_tritons_cache_under_the_original_key(on_4090):
    _tile_launch(num_stages=5)
    from triton.runtime.driver import driver

    kernel_cache = _tile.device_caches[driver.active.get_current_device()][0]
    [(key, kernel)] = kernel_cache.items()
    assert "'num_stages': 5" in key
    assert kernel.metadata.num_stages == 4


def test_one_warning_per_kernel_one_record_per_configuration(on_4090, caplog):
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu"):
        _tile_launch(num_stages=5)
        _tile_launch(num_stages=6)
    assert len([r for r in caplog.records if "safety net" in r.getMessage()]) == 1
    assert sorted(iv.before["num_stages"] for iv in state.local()) == [5, 6]


def test_a_new_specialization_reuses_the_decision(on_4090, monkeypatch):
    _tile_launch(m=1024, num_stages=5)
    compiles = _spy(monkeypatch, guard._Launch, "compile")
    _tile_launch(m=1000, num_stages=5)  # M % 16 != 0: another Triton specialization
    assert len(compiles) == 1  # the remembered variant, directly
    assert on_4090[-1].num_stages == 4
    [iv] = state.local()
    assert iv.specializations == 2


def test_nothing_fits_raises_the_new_message(on_4090, monkeypatch, caplog):
    with (
        caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu"),
        pytest.raises(OutOfResources) as info,
    ):
        _tile_launch(BLOCK_M=256, BLOCK_N=256, BLOCK_K=128, num_stages=2)
    err = info.value
    assert isinstance(err, guard.SharedMemoryError)
    assert (err.required, err.limit, err.name) == (131_072, LIMIT, "shared memory")
    text = str(err)
    assert text.startswith("out of resource: shared memory, Required: 131072, Hardware limit: 101376.")
    assert "_tile" in text and "num_stages=1 (was 2): 131072 B" in text and "What you can do:" in text
    rescues = _spy(monkeypatch, guard, "_rescue")
    with pytest.raises(guard.SharedMemoryError):  # the cached kernel fails the same way, without a new search
        _tile_launch(BLOCK_M=256, BLOCK_N=256, BLOCK_K=128, num_stages=2)
    assert rescues == []
    assert [iv.outcome for iv in state.local()] == ["failed"]
    assert len([r for r in caplog.records if "no variant" in r.getMessage()]) == 1


def test_error_survives_pickling():
    import pickle

    err = guard.SharedMemoryError(131_072, LIMIT, kernel="k", detail="tried x")
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again)) == (type(err), str(err))


def test_kernels_outside_sglang_are_left_alone(on_4090, monkeypatch):
    monkeypatch.setattr(guard, "GUARDED_PREFIXES", ("sglang.",))
    with pytest.raises(OutOfResources) as info:
        _tile_launch(num_stages=5)
    assert not isinstance(info.value, guard.SharedMemoryError)
    assert state.local() == []


def test_compile_errors_pass_through_and_the_patch_stays(on_4090):
    with pytest.raises(CompilationError):
        _broken[(1,)](torch.empty(16, device="meta"), BLOCK=16)
    assert registry.results()["safety-net"].status is Status.APPLIED
    _tile_launch(num_stages=5)  # still guarded
    assert on_4090[-1].num_stages == 4


def test_concurrent_first_launches(on_4090, monkeypatch, caplog):
    rescues = _spy(monkeypatch, guard, "_rescue")
    threads, barrier, errors = 8, threading.Barrier(8), []

    def worker() -> None:
        barrier.wait()
        try:
            _tile_launch(num_stages=7)
        except Exception as exc:
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu"):
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    assert errors == []
    assert len(on_4090) == threads
    assert len({(x.num_stages, x.shared) for x in on_4090}) == 1
    assert (on_4090[0].num_stages, on_4090[0].shared) == (4, 98_304)
    assert len(rescues) == 1
    assert len([r for r in caplog.records if "safety net" in r.getMessage()]) == 1
    [iv] = state.local()
    assert iv.specializations == 1


# --- autotuned kernels ----------------------------------------------------------


def test_autotuner_keeps_its_own_choice_when_a_config_fits(on_4090):
    _launch(_tuned_mixed)
    assert on_4090[-1].num_stages == 3
    assert state.local() == []  # the autotuner skipped the 5-stage config itself


def test_autotuned_kernel_whose_every_config_is_too_large(on_4090):
    _launch(_tuned_all_big)
    assert (on_4090[-1].num_stages, on_4090[-1].shared) == (4, 98_304)
    [iv] = state.local()
    assert iv.before["num_stages"] == 5  # the autotuner's pick (all timed out: its first config), fitted


# --- SGLang's kernels, against the compile-only oracle ---------------------------


def _moe_call(
    cfg: dict[str, int], *, E: int = 8, N: int = 1024, K: int = 2048, topk: int = 2, M: int = 256
) -> None:
    """SGLang's invoke_fused_moe_kernel (w13 GEMM, bf16) on meta tensors, routing buffers as SGLang sizes them."""
    from sglang.kernels.ops.moe import fused_moe_triton_kernels as fk

    m, bm, numel = "meta", cfg["BLOCK_SIZE_M"], M * topk
    padded = numel + E * (bm - 1)
    i32 = {"device": m, "dtype": torch.int32}
    fk.invoke_fused_moe_kernel(
        torch.empty(M, K, device=m, dtype=torch.bfloat16),
        torch.empty(E, 2 * N, K, device=m, dtype=torch.bfloat16),
        None,
        torch.empty(numel, 2 * N, device=m, dtype=torch.bfloat16),
        None,
        None,
        None,
        torch.empty(M, topk, device=m, dtype=torch.float32),
        torch.empty(M, topk, **i32),
        torch.empty(padded, **i32),
        torch.empty(-(-padded // bm), **i32),
        torch.empty(1, **i32),
        False,
        topk,
        cfg,
        compute_type=tl.bfloat16,
        use_fp8_w8a8=False,
        use_int8_w8a8=False,
        use_int8_w8a16=False,
        use_int4_w4a16=False,
        per_channel_quant=False,
    )


OLD_MOE_TILE = {
    "BLOCK_SIZE_M": 128,
    "BLOCK_SIZE_N": 128,
    "BLOCK_SIZE_K": 128,
    "GROUP_SIZE_M": 1,
    "num_warps": 8,
}


@pytest.mark.parametrize("spec", [RTX_4090, CAPPED_H200], ids=["sm_89", "sm_90-capped"])
def test_moe_stage_step_down_matches_the_oracle(fresh, spec):
    """The guard runs the old 128x128x128 4-stage fused-MoE tile with the first
    stage count the compile-only oracle says fits, and the kernel it launches
    needs exactly the oracle's bytes."""
    from sglang_consumer_gpu.families import on_gpu
    from sglang_consumer_gpu.oracle.capture import capture_launches

    oracle: dict[int, int] = {}
    with on_gpu(spec, patched=False):
        for stages in (4, 3, 2, 1):
            with capture_launches(spec, cache=False) as launches:
                _moe_call({**OLD_MOE_TILE, "num_stages": stages})
            oracle[stages] = next(x.resources.shared for x in launches if x.kernel == "fused_moe_kernel")
        with safety_net_installed(), emulated_gpu(spec) as ran:
            _moe_call({**OLD_MOE_TILE, "num_stages": 4})
    assert oracle[4] > spec.smem_per_block_optin  # 196,608 on sm_89, 262,144 on sm_90
    expected = next(s for s in (3, 2, 1) if oracle[s] <= spec.smem_per_block_optin)
    launch = next(x for x in ran if x.kernel == "fused_moe_kernel")
    assert (launch.num_stages, launch.shared) == (expected, oracle[expected])
    [iv] = state.local()
    assert (iv.required, iv.fitted) == (oracle[4], oracle[expected])


def test_the_oracle_still_sees_the_original_kernel(fresh):
    """Under the compile-only oracle the guard stands aside: ``check`` reports SGLang's real need."""
    from sglang_consumer_gpu.families import on_gpu
    from sglang_consumer_gpu.oracle.capture import capture_launches

    with (
        on_gpu(RTX_4090, patched=False),
        safety_net_installed(),
        capture_launches(RTX_4090, cache=False) as launches,
    ):
        _moe_call({**OLD_MOE_TILE, "num_stages": 4})
    assert next(x.resources.shared for x in launches if x.kernel == "fused_moe_kernel") == 196_608
    assert state.local() == []


def _extend_call(launcher: str) -> None:
    """SGLang's extend-attention launcher for the MLA shape (Lq=576, Lv=512) on meta tensors."""
    from sglang_consumer_gpu.oracle.kernels import attention as oa

    seam = oa.LAUNCHERS[launcher]
    module = __import__(seam.module, fromlist=["_"])
    args, kwargs = oa._extend_args(oa.AttentionCase(launcher, 576, 512))
    getattr(module, seam.attr)(*args, **kwargs)


def test_extend_attention_sm90_tile_shrinks_block_n(fresh):
    """SGLang's sm_90 extend tile for MLA (32x64, one stage) needs 106,496 B on
    sm_90; at one stage only the shrink rule can help: BLOCK_N 64 -> 32."""
    from sglang_consumer_gpu.families import on_gpu

    with on_gpu(CAPPED_H200, patched=False), safety_net_installed(), emulated_gpu(CAPPED_H200) as ran:
        _extend_call("extend")
        with pytest.raises(guard.SharedMemoryError, match="deterministic"):
            _extend_call("extend_unified")  # its tile fixes the numerics: stages only, and it has one
    launch = next(x for x in ran if x.kernel == "_fwd_kernel")
    assert (
        launch.constexprs["BLOCK_N"],
        launch.constexprs["BLOCK_N_PREFIX"],
        launch.constexprs["BLOCK_M"],
    ) == (
        32,
        32,
        32,
    )
    assert launch.shared <= LIMIT
    fitted, failed = sorted(state.local(), key=lambda iv: iv.outcome, reverse=True)
    assert (fitted.kernel, fitted.required, fitted.after) == (
        "_fwd_kernel",
        106_496,
        {"num_stages": 1, "BLOCK_N": 32, "BLOCK_N_PREFIX": 32},
    )
    assert (failed.kernel, failed.outcome, failed.required) == ("_fwd_kernel_unified", "failed", 106_496)


# --- the patch declaration ------------------------------------------------------


def test_patch_is_for_the_99_kb_class_only():
    for patch in safety_net.PATCHES:
        assert patch.needed_on(RTX_4090) and patch.needed_on(CAPPED_H200)
        assert not patch.needed_on(H100)


def test_patch_refuses_a_moved_anchor():
    def _do_compile(self, key, signature, device, constexprs, options, attrs):  # Triton dropped "warmup"
        return None

    with pytest.raises(RuntimeError, match="not installed"):
        safety_net.PATCHES[0].build(_do_compile, sys.modules["triton.runtime.jit"])


def test_triton_still_checks_shared_memory_at_load():
    assert not safety_net.upstream_fixed(sys.modules["triton.runtime.jit"])


def test_activation_path_installs_the_guard_for_sglangs_kernels(tmp_path):
    """Through the plugin's real activation (the import watcher on a virtual
    RTX 4090), the guard is in place once Triton loads, and SGLang's fused-MoE
    kernel with the old 4-stage tile launches (emulated sm_89 limit)."""
    from conftest import run_python_json

    out = run_python_json(
        """
        import json, os, sys
        sys.path.insert(0, os.environ["TESTS_DIR"])
        import sglang.kernels.ops.moe.fused_moe_triton_kernels  # noqa: F401  (the watcher applies the patches)
        from triton.runtime.jit import JITFunction
        from sglang_consumer_gpu.hardware import find_gpu
        from sglang_consumer_gpu.patching import registry
        from sglang_consumer_gpu.safety import state
        from sglang_consumer_gpu.emulation.no_gpu import emulated_gpu
        from test_safety_guard import OLD_MOE_TILE, _moe_call
        with emulated_gpu(find_gpu("NVIDIA GeForce RTX 4090")) as ran:
            _moe_call({**OLD_MOE_TILE, "num_stages": 4})
        print(json.dumps({
            "results": {k: v.status.value for k, v in registry.results().items() if k.startswith("safety")},
            "marker": getattr(JITFunction._do_compile, registry.MARKER, (None,))[0],
            "tree_set": bool(os.environ.get(state.TREE_ENV)),
            "ran": [(x.kernel, x.num_stages, x.shared) for x in ran],
            "doctor": state.lines(),
        }))
        """,
        env={
            "SGLANG_CONSUMER_GPU_VIRTUAL": "NVIDIA GeForce RTX 4090",
            "SGLANG_CONSUMER_GPU_EXTRA_PATCH_MODULES": "sglang_consumer_gpu.patches.safety_net",
            "SGLANG_CONSUMER_GPU_CACHE_DIR": str(tmp_path),
            "TESTS_DIR": str(__import__("pathlib").Path(__file__).parent),
        },
    )
    assert out["results"] == {"safety-net": "applied", "safety-net-autotune": "applied"}
    assert out["marker"] == "safety-net" and out["tree_set"]
    assert ["fused_moe_kernel", 2, 65_536] in out["ran"]
    assert "fused_moe_kernel: needed 196608 B > 101376 B; ran with num_stages=2 (was 4)" in out["doctor"][1]
