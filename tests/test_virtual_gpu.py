"""virtual_gpu: SGLang 0.5.23's own capability branches, exercised for GPUs that are not here."""

from __future__ import annotations

import pytest
import torch

from sglang_consumer_gpu.families import on_gpu
from sglang_consumer_gpu.hardware import current_spec, find_gpu

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
H100 = find_gpu("NVIDIA H100 80GB HBM3")
A100 = find_gpu("NVIDIA A100-SXM4-80GB")


@pytest.fixture(scope="module")
def sgl():
    from sglang.kernels.ops.attention import extend_attention
    from sglang.kernels.ops.moe import fused_moe_triton_kernels
    from sglang.srt.layers.moe.moe_runner.triton_utils import fused_moe_triton_config

    return extend_attention, fused_moe_triton_config, fused_moe_triton_kernels


def _extend_blocks(ea, head_dim: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N) from SGLang's own helper."""
    _dmodel, _dpe, _dv, block_m, block_n, _warps = ea._get_block_sizes_for_extend_attention(
        head_dim, head_dim
    )
    return block_m, block_n


def test_extend_attention_takes_the_sm89_branch_on_a_virtual_4090(sgl):
    ea = sgl[0]
    with on_gpu(RTX_4090, patched=False):
        got = {d: _extend_blocks(ea, d) for d in (64, 128, 256)}
    # extend_attention.py, "sm86/sm89 has a much smaller shared memory size (100K)"
    assert got == {64: (64, 128), 128: (64, 128), 256: (64, 64)}


def test_extend_attention_takes_the_hopper_and_ampere_branches(sgl):
    ea = sgl[0]
    with on_gpu(H100, patched=False):
        hopper = _extend_blocks(ea, 128)
    with on_gpu(A100, patched=False):
        ampere = _extend_blocks(ea, 128)
    assert hopper == (128, 64)
    assert ampere == (128, 128)


def test_fp8_default_config_follows_shared_memory(sgl):
    cfg = sgl[1]
    args = dict(M=1024, E=64, N=1024, K=2048, topk=8, dtype="fp8_w8a8", is_marlin=False)
    with on_gpu(RTX_4090, patched=False):
        assert cfg._get_cuda_shared_memory_per_block_optin() == 101_376
        low = cfg.get_default_config(**args)
    with on_gpu(H100, patched=False):
        assert cfg._get_cuda_shared_memory_per_block_optin() == 232_448
        high = cfg.get_default_config(**args)
    # SGLang's low-shared-memory fp8 default (M > E) vs its 128x256 default.
    assert (low["BLOCK_SIZE_M"], low["BLOCK_SIZE_N"], low["BLOCK_SIZE_K"], low["num_stages"]) == (
        64,
        128,
        256,
        2,
    )
    assert (high["BLOCK_SIZE_M"], high["BLOCK_SIZE_N"], high["BLOCK_SIZE_K"]) == (128, 256, 128)


def test_sm90_only_switches_follow_the_spec(sgl):
    fk = sgl[2]
    from sglang.kernels.jit.utils import is_arch_support_pdl

    with on_gpu(RTX_4090, patched=False):
        assert not fk.should_enable_swap_ab(16, 64)
        assert not is_arch_support_pdl()
    with on_gpu(H100, patched=False):
        assert fk.should_enable_swap_ab(16, 64)
        assert is_arch_support_pdl()


def test_torch_answers_and_everything_is_restored(sgl):
    ea = sgl[0]
    before = (torch.cuda.is_available(), torch.cuda.get_device_capability, hasattr(ea, "CUDA_CAPABILITY"))
    with on_gpu(RTX_4090, patched=False):
        assert torch.cuda.is_available()
        assert torch.cuda.get_device_name() == "NVIDIA GeForce RTX 4090"
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        assert (props.major, props.minor, props.multi_processor_count) == (8, 9, 128)
        assert current_spec() == RTX_4090
        with on_gpu(H100, patched=False):  # nesting
            assert torch.cuda.get_device_capability() == (9, 0)
            assert ea.CUDA_CAPABILITY == (9, 0)
        assert ea.CUDA_CAPABILITY == (8, 9)
    after = (torch.cuda.is_available(), torch.cuda.get_device_capability, hasattr(ea, "CUDA_CAPABILITY"))
    assert after == before
    assert current_spec() != RTX_4090
