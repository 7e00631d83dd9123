"""The fused-MoE oracle spec: SGLang 0.5.23's own launcher, dry-run for GPUs that are not here."""

from __future__ import annotations

import pytest
import triton

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.oracle.kernels.moe import dry_run, moe_resources, moe_resources_both

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
H100 = find_gpu("NVIDIA H100 80GB HBM3")
SHAPE = dict(E=64, N=1024, K=2048, topk=8, M=256)
BIG_TILE = dict(
    BLOCK_SIZE_M=128, BLOCK_SIZE_N=128, BLOCK_SIZE_K=128, GROUP_SIZE_M=16, num_warps=8, num_stages=4
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))


def test_bf16_128_tile_overflows_sm89_and_needs_more_on_sm90():
    ada = moe_resources(RTX_4090, dtype=None, block_shape=None, config=BIG_TILE, **SHAPE)
    hopper = moe_resources(H100, dtype=None, block_shape=None, config=BIG_TILE, **SHAPE)
    assert ada.shared > 101_376 and not ada.fits  # the seeds' OutOfResources
    assert (ada.num_warps, ada.num_stages, ada.target) == (8, 4, "sm_89")
    assert hopper.shared > ada.shared  # compile for the real target: sm_90 is no stand-in
    if triton.__version__.startswith("3.8"):  # measured on Triton 3.8 (DESIGN.md section 3)
        assert (ada.shared, hopper.shared) == (196_608, 262_144)


def test_both_gemms_and_quantized_paths_compile():
    cfg = dict(
        BLOCK_SIZE_M=64, BLOCK_SIZE_N=128, BLOCK_SIZE_K=128, GROUP_SIZE_M=32, num_warps=4, num_stages=3
    )
    fp8 = moe_resources_both(
        RTX_4090, dtype="fp8_w8a8", block_shape=[128, 128], config=cfg, **SHAPE
    )
    assert set(fp8) == {"up", "down"}
    assert fp8["up"].kernel == "fused_moe_kernel:up" and fp8["down"].kernel == "fused_moe_kernel:down"
    assert all(r.fits for r in fp8.values())  # SGLang's block-quant default tile fits an RTX 4090
    w4 = moe_resources(RTX_4090, dtype="int4_w4a16", block_shape=None, config=cfg, **SHAPE)
    assert w4.kernel.startswith("fused_moe_kernel_gptq_awq")  # moe_wna16's Triton kernel


def test_launcher_switches_follow_the_virtual_gpu():
    """SGLang's invoke_fused_moe_kernel turns swap-AB and PDL on for sm_90 only."""
    cfg = dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=128, GROUP_SIZE_M=1, num_warps=4, num_stages=2)
    kw = dict(dtype="fp8_w8a8", block_shape=[128, 128], config=cfg, **SHAPE)
    ada = [x for x in dry_run(RTX_4090, **kw) if x.kernel == "fused_moe_kernel"][-1]
    hopper = [x for x in dry_run(H100, **kw) if x.kernel == "fused_moe_kernel"][-1]
    assert "USE_GDC" not in ada.constexprs and hopper.constexprs.get("USE_GDC") is True
    assert ada.constexprs["BLOCK_SIZE_M"] == 16 and ada.constexprs["num_stages"] == 2


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown MoE dtype"):
        moe_resources(RTX_4090, dtype="fp4", block_shape=None, config=BIG_TILE, **SHAPE)
    with pytest.raises(ValueError, match="positive"):
        moe_resources(RTX_4090, dtype=None, block_shape=None, config=BIG_TILE, **{**SHAPE, "M": 0})
