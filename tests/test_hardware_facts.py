"""Architecture facts, written once on the hardware model, and the decisions that read them."""

from __future__ import annotations

import pytest

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec, pipelined_copies
from sglang_consumer_gpu.int8.backend import sgl_kernel_int8_support
from sglang_consumer_gpu.moe.smem import estimate_shared
from sglang_consumer_gpu.patches import attention_extend, attention_prefill


@pytest.mark.parametrize(
    ("gpu", "fp8", "ampere", "sgl_int8"),
    [
        ("Tesla T4", False, False, True),
        ("NVIDIA A100-SXM4-80GB", False, True, True),
        ("RTX 3090", False, True, True),
        ("RTX 4090", True, True, True),
        ("L40S", True, True, True),
        ("NVIDIA H100 80GB HBM3", True, True, True),
        ("RTX 5090", True, True, False),
    ],
)
def test_facts_per_gpu(gpu: str, fp8: bool, ampere: bool, sgl_int8: bool) -> None:
    spec = find_gpu(gpu)
    assert spec.supports_fp8_e4m3 is fp8
    assert spec.is_ampere_or_newer is ampere
    assert (spec.sgl_kernel_int8_tiles is not None) is sgl_int8
    assert sgl_kernel_int8_support(spec)[0] is sgl_int8


def test_sgl_kernel_int8_tiles_name_the_family() -> None:
    assert "small-shared-memory" in find_gpu("RTX 4090").sgl_kernel_int8_tiles
    assert "fp16 output only" in find_gpu("Tesla T4").sgl_kernel_int8_tiles
    assert GpuSpec.for_arch(10, 0).sgl_kernel_int8_tiles is None


@pytest.mark.parametrize(
    ("capability", "stages", "copies"),
    [((8, 9), 4, 3), ((8, 9), 1, 1), ((12, 0), 3, 2), ((9, 0), 4, 4), ((10, 0), 2, 2)],
)
def test_pipelined_copies(capability: tuple[int, int], stages: int, copies: int) -> None:
    assert pipelined_copies(capability, stages) == copies


def test_the_smem_model_reads_the_pipelining_fact() -> None:
    """Same tile, 4 stages: three copies of the A/B tiles on sm_89, four on sm_90."""
    cfg = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "num_stages": 4}
    per_copy = 64 * 64 * 2 + 64 * 64 * 2
    assert estimate_shared(cfg, None, None, (8, 9)) == 3 * per_copy
    assert estimate_shared(cfg, None, None, (9, 0)) == 4 * per_copy


@pytest.mark.parametrize("patch", [attention_extend, attention_prefill])
def test_attention_patches_are_needed_on_the_low_smem_class_from_ampere_on(patch) -> None:
    assert patch.needed_on(find_gpu("RTX 4090")) and patch.needed_on(find_gpu("RTX 3090"))
    assert not patch.needed_on(find_gpu("Tesla T4"))  # low smem, but Turing
    assert not patch.needed_on(find_gpu("NVIDIA H100 80GB HBM3"))  # Ampere+, but 232 KB
