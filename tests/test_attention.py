"""Attention tiles: pure decisions, the analytic model against the oracle, and
the patches under virtual GPUs, all against the real SGLang 0.5.23 and Triton."""

from __future__ import annotations

import pytest

from sglang_consumer_gpu.attention import (
    HEAD_DIMS,
    PREFILL_HEAD_DIMS,
    attention_smem_bytes,
    extend_tile,
    prefill_tile,
)
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.oracle.kernels.attention import AttentionCase, cases, dry_run, for_spec
from sglang_consumer_gpu.patches import attention_extend, attention_prefill

LOW_SMEM = ("RTX 3090", "RTX 4090", "L40S", "RTX 5090")


# --- pure decisions -------------------------------------------------------


@pytest.mark.parametrize("gpu", LOW_SMEM)
def test_every_tile_fits_by_the_model(gpu: str) -> None:
    spec = find_gpu(gpu)
    for lq, lv in HEAD_DIMS:
        t = extend_tile(spec, lq, lv)
        assert t.num_stages == 1
        assert t.block_m >= 16 and t.block_n >= 16
    for d in PREFILL_HEAD_DIMS:
        for elem in (2, 4):
            t = prefill_tile(spec, d, elem)
            assert (
                attention_smem_bytes(t.block_m, t.block_n, _pow2(d), _pow2(d), elem)
                <= spec.smem_per_block_optin
            )


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def test_choice_follows_the_budget_not_the_capability() -> None:
    """Same capability, different budget -> different tile: the decision reads smem, not sm_xx."""
    from dataclasses import replace

    l40s = find_gpu("L40S")
    big = replace(l40s, smem_per_block_optin=232_448)
    assert extend_tile(l40s, 576, 512).as_tuple()[:2] == (32, 32)
    assert extend_tile(big, 576, 512).as_tuple()[:2] == (32, 64)
    assert prefill_tile(l40s, 128, elem_bytes=4).block_m == 64
    assert prefill_tile(big, 128, elem_bytes=4).block_m == 128
    with pytest.raises(ValueError, match="no extend-attention tile"):
        extend_tile(replace(l40s, smem_per_block_optin=4096), 576, 512)


def test_extend_choose_keeps_sglang_when_it_fits() -> None:
    spec = find_gpu("RTX 4090")
    fits = (128, 0, 128, 64, 128, 8)
    assert attention_extend.choose(spec, 128, 128, fits) is fits
    too_big = (512, 64, 512, 32, 64, 8)  # SGLang's sm_80/sm_90 MLA tile
    assert attention_extend.choose(spec, 576, 512, too_big) == (512, 64, 512, 32, 32, 8)
    odd = (1, 2, 3)  # SGLang changed the helper's contract: pass through
    assert attention_extend.choose(spec, 576, 512, odd) is odd


def test_prefill_rewrite_is_pure_and_recomputes_grid() -> None:
    import torch

    spec = find_gpu("RTX 5090")
    q = torch.empty(8, 2, 256, device="meta", dtype=torch.bfloat16)
    kw = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_DMODEL": 256, "Lk": 256, "num_warps": 8, "num_stages": 1}
    grid, new = attention_prefill.rewrite_launch(spec, (3, 2, 8), (q,), kw, 1000)
    assert new["BLOCK_M"] == new["BLOCK_N"] == 64 and grid == (3, 2, 16)
    assert kw["BLOCK_M"] == 128  # the caller's kwargs are not mutated
    small = dict(kw, BLOCK_DMODEL=128, Lk=128)
    assert attention_prefill.rewrite_launch(spec, (3, 2, 8), (q,), small, 1000) == ((3, 2, 8), small)
    assert attention_prefill.rewrite_launch(spec, (3, 2, 8), (q,), {"X": 1}, 1000) == ((3, 2, 8), {"X": 1})


def test_fp8_kv_cases_use_e5m2_before_ada() -> None:
    case = AttentionCase("extend", 128, 128, kv_dtype="float8_e4m3fn")
    assert for_spec(case, find_gpu("RTX 3090")).kv_dtype == "float8_e5m2"
    assert for_spec(case, find_gpu("RTX 4090")).kv_dtype == "float8_e4m3fn"


def test_patches_skip_turing() -> None:
    t4 = find_gpu("Tesla T4")
    assert not attention_extend.PATCH.needed_on(t4)
    assert not attention_prefill.PATCH.needed_on(t4)
    assert attention_prefill.PATCH.needed_on(find_gpu("RTX 5090"))
    assert not attention_prefill.PATCH.needed_on(find_gpu("H100 80GB HBM3"))


# --- oracle: SGLang's real launchers, dry-run on virtual GPUs -------------


def _dry_run(spec, case, *, patched):
    from sglang_consumer_gpu.families import on_gpu

    with on_gpu(spec, patched=patched):
        return dry_run(spec, case)


def test_oracle_reproduces_sm120_prefill_failure_and_the_fix() -> None:
    spec = find_gpu("RTX 5090")
    case = AttentionCase("prefill", 128, 128, dtype="float32", variant="noncausal")
    (before,) = _dry_run(spec, case, patched=False)
    assert before.constexprs["BLOCK_M"] == 128
    assert before.resources.shared == 131_072 and not before.resources.fits
    (after,) = _dry_run(spec, case, patched=True)
    assert after.resources.fits and after.constexprs["BLOCK_M"] == 64


def test_oracle_mla_extend_datacenter_tile_overflows_sm89() -> None:
    """SGLang's sm_80/sm_90 MLA tile (32x64) needs 106,496 B on sm_89 (Triton 3.8)."""
    spec = find_gpu("L40S")
    big = find_gpu("H100 80GB HBM3")
    (h100,) = _dry_run(big, AttentionCase("extend", 576, 512, q_heads=16, kv_heads=1), patched=False)
    assert (h100.constexprs["BLOCK_M"], h100.constexprs["BLOCK_N"]) == (32, 64)
    from sglang_consumer_gpu.oracle.core import compile_only  # noqa: F401  (same toolchain)

    tiles = attention_extend.choose(spec, 576, 512, (512, 64, 512, 32, 64, 8))
    assert tiles[3:5] == (32, 32)
    (l40s,) = _dry_run(spec, AttentionCase("extend", 576, 512, q_heads=16, kv_heads=1), patched=True)
    assert l40s.resources.fits


def test_virtual_4090_gets_sglang_sm89_branch_and_patch_says_upstream_fixed() -> None:
    from sglang_consumer_gpu.families import on_gpu
    from sglang_consumer_gpu.patching import registry

    with on_gpu(find_gpu("RTX 4090")):
        import sglang.kernels.ops.attention.extend_attention as ea

        assert ea._get_block_sizes_for_extend_attention(128, 128)[3:] == (64, 128, 8)
        assert attention_extend.upstream_fixed(ea)
        registry.register(attention_extend.PATCH)
        assert registry.apply_patch(attention_extend.PATCH).status.value == "already fixed upstream"


@pytest.mark.parametrize("gpu", LOW_SMEM)
def test_ci_subset_zero_fail_and_model_is_upper_bound(gpu: str) -> None:
    """Every launch in the CI subset compiles within budget, and the model never under-counts."""
    spec = find_gpu(gpu)
    for case in cases(full=False):
        for launch in dry_run(spec, case):
            res = launch.resources
            assert res is not None and res.fits, (case.label, res)
            c = launch.constexprs
            if launch.kernel == "_fwd_kernel" and "BLOCK_M" in c:
                dq = c["BLOCK_DMODEL"] + c.get("BLOCK_DPE", 0)
                dv = c.get("BLOCK_DV", c["BLOCK_DMODEL"])
                elem = 4 if case.dtype == "float32" else 2
                model = attention_smem_bytes(c["BLOCK_M"], c["BLOCK_N"], dq, dv, elem)
                assert model >= res.shared, (case.label, model, res.shared)


@pytest.mark.slow
@pytest.mark.parametrize("gpu", LOW_SMEM)
def test_full_sweep_zero_fail(gpu: str) -> None:
    spec = find_gpu(gpu)
    failed = [
        (case.label, launch.kernel, launch.resources.shared)
        for case in cases(full=True)
        for launch in dry_run(spec, for_spec(case, spec))
        if launch.resources is not None and not launch.resources.fits
    ]
    assert failed == []
