"""Which backends have kernels for a GPU, and what the plugin picks instead (pure decisions)."""

from __future__ import annotations

import pytest

from sglang_consumer_gpu.backends import (
    FALLBACK,
    attention_runs,
    checks_backends,
    mxfp4_marlin_gate_opens,
    mxfp4_moe_path,
    steer_attention,
)
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec

T4, RTX3090, RTX4090, L40S, H100, RTX5090 = (
    find_gpu(n) for n in ("Tesla T4", "RTX 3090", "RTX 4090", "L40S", "NVIDIA H100 80GB HBM3", "RTX 5090")
)
B200 = GpuSpec.for_arch(10, 0)


@pytest.mark.parametrize(
    ("spec", "fa3", "fa3_mla", "trtllm_mha", "trtllm_mla", "flashmla"),
    [
        (T4, False, False, False, False, False),
        (RTX3090, True, False, False, False, False),
        (RTX4090, True, False, False, False, False),
        (H100, True, True, True, False, True),
        (B200, False, False, True, True, True),
        (RTX5090, False, False, True, False, False),
    ],
)
def test_attention_kernels_per_architecture(
    spec: GpuSpec, fa3: bool, fa3_mla: bool, trtllm_mha: bool, trtllm_mla: bool, flashmla: bool
) -> None:
    assert attention_runs(spec, "fa3", mla=False) is fa3
    assert attention_runs(spec, "fa3", mla=True) is fa3_mla
    assert attention_runs(spec, "trtllm_mha", mla=False) is trtllm_mha
    assert attention_runs(spec, "trtllm_mha", mla=True) is False  # non-MLA models only
    assert attention_runs(spec, "trtllm_mla", mla=True) is trtllm_mla
    assert attention_runs(spec, "cutedsl_mla", mla=True) is trtllm_mla
    assert attention_runs(spec, "flashmla", mla=True) is flashmla


@pytest.mark.parametrize(
    "backend", ["flashinfer", "triton", "fa4", "torch_native", "aiter", "no-such-backend"]
)
def test_backends_without_facts_are_sglangs_business(backend: str) -> None:
    for spec in (T4, RTX4090, RTX5090):
        assert attention_runs(spec, backend, mla=False) is None
        assert steer_attention(spec, backend, mla=False) is None


def test_steer_only_where_the_choice_has_no_kernels() -> None:
    steer = steer_attention(RTX5090, "fa3", mla=False)
    assert steer is not None and steer.to == FALLBACK == "triton"
    assert "sm_80-sm_90" in steer.why and "sm_120" in steer.why
    mla = steer_attention(RTX4090, "fa3", mla=True)
    assert mla is not None and "MLA" in mla.why and "sm_89" in mla.why
    assert steer_attention(RTX4090, "fa3", mla=False) is None  # FA3 has MHA kernels on sm_89
    assert steer_attention(T4, "fa3", mla=False) is not None
    assert steer_attention(RTX4090, "trtllm_mha", mla=False) is not None
    assert steer_attention(RTX5090, "trtllm_mha", mla=False) is None  # XQA/FMHAv2 on sm_120
    assert steer_attention(RTX4090, None, mla=False) is None


def test_data_center_choices_are_left_alone() -> None:
    """SGLang selects for sm_90/sm_100: the plugin never second-guesses it there."""
    assert not checks_backends(H100) and not checks_backends(B200)
    assert steer_attention(H100, "trtllm_mla", mla=True) is None
    assert steer_attention(B200, "fa3", mla=False) is None
    assert all(checks_backends(s) for s in (T4, RTX3090, RTX4090, L40S, RTX5090))


def test_mxfp4_marlin_gate_opens_on_sm80_to_sm89_only() -> None:
    assert [mxfp4_marlin_gate_opens(s) for s in (T4, RTX3090, RTX4090, L40S, H100, RTX5090)] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    assert mxfp4_marlin_gate_opens(GpuSpec.for_arch(8, 0))


def test_mxfp4_moe_paths() -> None:
    lifted = mxfp4_moe_path(RTX4090, "marlin")
    assert lifted.runs and not lifted.sglang_alone_runs and "MXFP4 Marlin requires SM90+" in lifted.note
    assert mxfp4_moe_path(H100, "marlin").sglang_alone_runs and mxfp4_moe_path(RTX5090, "marlin").runs
    assert not mxfp4_moe_path(T4, "marlin").runs
    packed = mxfp4_moe_path(RTX4090, "triton_kernel")
    assert packed.runs and not packed.upcast
    for runner in ("auto", "triton"):
        upcast = mxfp4_moe_path(RTX4090, runner)
        assert upcast.runs and upcast.upcast and "x3.8" in upcast.note and "marlin" in upcast.note
    assert "marlin" not in mxfp4_moe_path(RTX5090, "auto").note  # the gate is open there: nothing to add
    fi = mxfp4_moe_path(RTX4090, "flashinfer_mxfp4")
    assert not fi.runs and "sm_90/sm_100/sm_120" in fi.note
    assert mxfp4_moe_path(RTX5090, "flashinfer_mxfp4").runs
