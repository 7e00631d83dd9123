"""The fused-MoE engine on the CPU: SGLang's real launcher and kernel under Triton's interpreter.

``invoke_fused_moe_kernel`` and ``fused_moe_kernel`` from the installed SGLang run on CPU tensors
with ``TRITON_INTERPRET=1`` (one subprocess, small shapes). The interpreter computes bf16 dots
wrongly (values ~1e11 on inputs of order one, seen with Triton 3.8), so the interpreted
cases use fp16 activations; bf16 is a GPU case. Routing, quantization and references are
plain torch and tested here directly too.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch

from sglang_consumer_gpu.measure import moe
from sglang_consumer_gpu.moe.shape import MoeShape
from tests.conftest import run_python_json

MODES = [
    (None, None, False),
    ("fp8_w8a8", None, False),
    ("fp8_w8a8", None, True),
    ("fp8_w8a8", (128, 128), False),
    ("int8_w8a8", None, False),
    ("int8_w8a8", (128, 128), False),
]

_CODE = """
import json
from sglang_consumer_gpu.measure.moe import MoeCase, MoeLayer
from sglang_consumer_gpu.moe.shape import MoeShape

cfg = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 2}
out = {"modes": []}
for dtype, block, per_channel in %r:
    case = MoeCase(MoeShape(4, 128, 256, 2, dtype, block, per_channel), 5, "float16")
    layer = MoeLayer(case, device="cpu", slots=2)
    c = dict(cfg, BLOCK_SIZE_K=128) if block else cfg
    r = layer.check(c)
    out["modes"].append({"label": case.label, **r.to_dict()})

case = MoeCase(MoeShape(4, 128, 256, 2, None), 7, "float16")
layer = MoeLayer(case, device="cpu", slots=2)
layer.gemms(cfg, dict(cfg, BLOCK_SIZE_N=64))(1)
out["gemms_written"] = bool(layer.slots[1].c1.isfinite().all() and layer.slots[1].c2.isfinite().all())
try:
    layer.gemms(cfg, dict(cfg, BLOCK_SIZE_M=32))
    out["down_block_m"] = "accepted"
except ValueError as exc:
    out["down_block_m"] = str(exc)
out["ok_before"] = layer.check(cfg).ok
al = layer.alignment(0, 16)
al.expert_ids[0] = (int(al.expert_ids[0]) + 1) %% 4  # route one block to the wrong expert
out["misrouted"] = layer.check(cfg).to_dict()
layer = MoeLayer(case, device="cpu", slots=1)
al = layer.alignment(0, 16)
real = (al.sorted_ids < 7 * 2).nonzero()[0, 0]
al.sorted_ids[real] = 7 * 2  # one (token, expert) slot dropped: its output row stays NaN
out["dropped"] = layer.check(cfg).to_dict()
from sglang_consumer_gpu.measure.common import judge
from sglang_consumer_gpu.measure.moe import error_bound
layer = MoeLayer(case, device="cpu", slots=1)
up_out = layer.up_gemm(cfg)(0)
out["up_alone"] = judge(up_out, layer.up_reference(0), error_bound(case)).to_dict()
out["up_alone_down_untouched"] = bool(layer.slots[0].c2.isnan().all())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted() -> dict[str, Any]:
    return run_python_json(_CODE % (MODES,), env={"TRITON_INTERPRET": "1"}, timeout=900)


def test_the_up_gemm_alone_matches_its_float32_reference(interpreted: dict[str, Any]) -> None:
    """``MoeLayer.up_gemm``: one launch (the up GEMM), against ``up_reference``; the down GEMM's output is never written."""
    r = interpreted["up_alone"]
    assert r["ok"] and r["unwritten"] == 0 and 0 < r["error"] <= r["bound"], r
    assert interpreted["up_alone_down_untouched"]


@pytest.mark.parametrize("index", range(len(MODES)))
def test_every_dtype_matches_the_float32_reference(interpreted: dict[str, Any], index: int) -> None:
    r = interpreted["modes"][index]
    assert r["ok"], r
    assert r["unwritten"] == 0
    assert 0 < r["error"] <= r["bound"]
    assert r["detail"]["up"] > 0 and r["detail"]["down"] > 0  # both GEMMs compared


def test_paths_are_recorded(interpreted: dict[str, Any]) -> None:
    modes = {m["label"]: m["detail"] for m in interpreted["modes"]}
    for detail in modes.values():
        assert set(detail) >= {"quant", "align", "activation"}
        # SGLang 0.5.23's aligner needs sgl-kernel, absent on a CPU: the torch layout ran, and says why.
        assert detail["align"].startswith("torch (SGLang's: ")
    assert modes["E=4,N=128,K=256,topk=2,bf16,float16,M=5"]["quant"].startswith("none")
    fp8 = modes["E=4,N=128,K=256,topk=2,fp8_w8a8,float16,M=5"]["quant"]
    assert fp8.startswith("torch (SGLang's scaled_fp8_quant"), fp8
    # SGLang's Triton group quantizer runs under the interpreter and passes the check.
    int8_block = modes["E=4,N=128,K=256,topk=2,int8_w8a8,block,float16,M=5"]["quant"]
    assert int8_block == "sglang per_token_group_quant_int8", int8_block


def test_gemms_write_both_outputs(interpreted: dict[str, Any]) -> None:
    assert interpreted["gemms_written"]


def test_down_config_must_keep_block_m(interpreted: dict[str, Any]) -> None:
    assert "BLOCK_SIZE_M" in interpreted["down_block_m"]


def test_check_catches_misrouting(interpreted: dict[str, Any]) -> None:
    assert interpreted["ok_before"]
    bad = interpreted["misrouted"]
    assert not bad["ok"] and bad["error"] > 0.1, bad


def test_check_catches_an_unwritten_row(interpreted: dict[str, Any]) -> None:
    bad = interpreted["dropped"]
    assert not bad["ok"] and bad["unwritten"] > 0, bad


# ------------------------------------------------------------------------------ plain torch


def test_torch_align_layout_matches_sglangs_docstring_example() -> None:
    """SGLang's moe_align_block_size docstring: topk_ids [[2,3,4],[1,2,4],[1,3,4],[1,2,3]] (experts
    0-based here: minus one), block 4 -> each expert's 3 slots padded to 4."""
    ids = torch.tensor([[2, 3, 4], [1, 2, 4], [1, 3, 4], [1, 2, 3]], dtype=torch.int32) - 1
    sorted_ids, expert_ids, total = moe.torch_align(ids, 4, 4)
    assert int(total[0]) == 16
    assert sorted_ids[:16].tolist() == [3, 6, 9, 12, 0, 4, 10, 12, 1, 7, 11, 12, 2, 5, 8, 12]
    assert expert_ids[:4].tolist() == [0, 1, 2, 3]
    assert moe.alignment_ok(ids, 4, (sorted_ids, expert_ids, total))


def test_alignment_check_rejects_broken_layouts() -> None:
    ids = torch.randint(0, 8, (33, 4), dtype=torch.int32)
    good = moe.torch_align(ids, 16, 8)
    assert moe.alignment_ok(ids, 16, good)
    for corrupt in ("dup", "expert", "total"):
        s, e, t = (x.clone() for x in good)
        if corrupt == "dup":
            s[1] = s[0]
        elif corrupt == "expert":
            e[0] = (e[0] + 1) % 8
        else:
            t[0] += 16
        assert not moe.alignment_ok(ids, 16, (s, e, t)), corrupt


def test_align_falls_back_to_torch_and_says_why() -> None:
    ids = torch.randint(0, 8, (5, 2), dtype=torch.int32)
    al = moe.align(ids, 16, 8)
    assert al.path.startswith("torch (SGLang's: ")
    assert moe.alignment_ok(ids, 16, (al.sorted_ids, al.expert_ids, al.num_post))


@pytest.mark.parametrize(("dtype", "block", "per_channel"), MODES[1:])
def test_torch_quantizer_within_one_step_and_dequantizes(dtype: str, block: Any, per_channel: bool) -> None:
    case = moe.MoeCase(MoeShape(4, 128, 256, 2, dtype, block, per_channel), 9)
    x = torch.randn(9, 256).to(torch.bfloat16)
    q, s = moe.torch_quantize(x, case)
    assert moe.quantization_ok(x, q, s, case)
    want_scale = {"per-tensor": (1,), "per-channel": (9, 1), "block": (9, 2)}[case.quant]
    assert tuple(s.shape) == want_scale
    err = (moe.dequantize(q, s, case) - x.float()).norm() / x.float().norm()
    assert err < (0.05 if dtype == "fp8_w8a8" else 0.01)
    assert not moe.quantization_ok(x, q, s * 1.5, case)  # wrong scales are caught


def test_int8_without_blocks_is_per_channel() -> None:
    assert moe.MoeCase(MoeShape(8, 64, 128, 2, "int8_w8a8"), 1).quant == "per-channel"
    assert moe.MoeCase(MoeShape(8, 64, 128, 2, "fp8_w8a8"), 1).quant == "per-tensor"


def test_case_rejects_what_the_engine_cannot_run() -> None:
    with pytest.raises(ValueError, match="fused_moe_kernel dtypes"):
        moe.MoeCase(MoeShape(8, 64, 128, 2, "int4_w4a16"), 1)
    with pytest.raises(ValueError, match="M must be positive"):
        moe.MoeCase(MoeShape(8, 64, 128, 2), 0)


def test_error_bound() -> None:
    bf16 = moe.MoeCase(MoeShape(8, 64, 128, 2), 1)
    fp16 = moe.MoeCase(MoeShape(8, 64, 128, 2), 1, "float16")
    assert moe.error_bound(bf16) == pytest.approx(2**-8 + 2**-10)
    assert moe.error_bound(fp16) == pytest.approx(2**-11 + 2**-10)


def test_config_keys() -> None:
    cfg = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1}
    assert moe.config_key(cfg) == "16x32x64-g1-w4-s3"
    assert moe.parse_config_key("16x32x64-g1-w4-s3") == {**cfg, "num_warps": 4, "num_stages": 3}
    assert moe.launch_config({**cfg, "USE_TMA": True}) == cfg


def test_job_is_picklable_and_named() -> None:
    case = moe.MoeCase(MoeShape(128, 768, 2048, 8), 64)
    cfg = {
        "BLOCK_SIZE_M": 16,
        "BLOCK_SIZE_N": 32,
        "BLOCK_SIZE_K": 64,
        "GROUP_SIZE_M": 1,
        "num_warps": 4,
        "num_stages": 4,
    }
    job = moe.MoeJob.of(case, cfg)
    assert pickle.loads(pickle.dumps(job)) == job
    assert job.key == "E=128,N=768,K=2048,topk=8,bf16,bfloat16,M=64|16x32x64-g1-w4-s4"
    assert job.group == "bf16,none,bfloat16|16x32x64-g1-w4-s4"  # every M of one config: one worker
    assert job.cost == 16 * 32 * 64


def test_sglang_default_on_a_virtual_rtx_4090() -> None:
    """SGLang's own choice (no tuned file: its default), as the earlier benchmark plans recorded
    it (tests/fixtures/results/cpu_moe_bench_plan.json)."""
    from sglang_consumer_gpu.families.moe import sglang_default
    from sglang_consumer_gpu.hardware import find_gpu

    spec = find_gpu("NVIDIA GeForce RTX 4090")
    shape = MoeShape(128, 768, 2048, 8)
    assert sglang_default(spec, shape, 1) == {
        "BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1}  # fmt: skip
    fp8 = sglang_default(spec, MoeShape(128, 768, 2048, 8, "fp8_w8a8"), 4096)
    assert fp8["BLOCK_SIZE_K"] == 256 and fp8["num_stages"] == 2
