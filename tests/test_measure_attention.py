"""The attention engine on the CPU: SGLang's real extend and context attention under Triton's interpreter.

fp16 inputs (the interpreter computes bf16 dots wrongly, see tests/test_measure_moe.py) and
float32 for context attention; the tile the engine installs is read back from the launch.
"""

from __future__ import annotations

from typing import Any

import pytest

from sglang_consumer_gpu.measure import attention as att
from tests.conftest import run_python_json

_CODE = """
import json
from sglang_consumer_gpu.measure import attention as att
from sglang_consumer_gpu.patching.launch_filter import LaunchFilter, swap_kernel

out = {"extend": [], "prefill": []}
for lq, lv, heads in ((64, 64, (4, 2)), (192, 128, (4, 2)), (576, 512, (2, 1))):
    for variant in att.VARIANTS if lq == 64 else ("causal",):
        case = att.ExtendCase(lq, lv, *heads, (5, 9), (7, 0), variant, "float16")
        out["extend"].append({"label": case.label, **att.ExtendRun(case, device="cpu", slots=1).check((16, 16, 4)).to_dict()})
for d, causal, dtype in ((64, False, "float16"), (80, True, "float16"), (128, False, "float32")):
    case = att.PrefillCase(d, 2, (9, 4), causal, dtype)
    out["prefill"].append({"label": case.label, **att.PrefillRun(case, device="cpu", slots=1).check((16, 4)).to_dict()})

def recorded(module, run):
    seen = []
    def filt(grid, args, kw):
        seen.append({"grid": list(grid), **{k: kw[k] for k in ("BLOCK_M", "BLOCK_N", "num_warps")}})
        return grid, kw
    with swap_kernel(module, "_fwd_kernel", LaunchFilter(module._fwd_kernel, filt)):
        run(0)
    return seen[-1]

ext = att.ExtendRun(att.ExtendCase(64, 64, 4, 2, (5, 9), (7, 0), "causal", "float16"), device="cpu", slots=1)
out["extend_launch"] = recorded(ext.ea, ext.run((32, 16, 2)))
pre = att.PrefillRun(att.PrefillCase(64, 2, (40, 4), False, "float16"), device="cpu", slots=1)
out["prefill_launch"] = recorded(pre.pa, pre.run((16, 2)))

real = ext.ea.extend_attention_fwd
ext.ea.extend_attention_fwd = lambda *a, sm_scale, **kw: real(*a, sm_scale=sm_scale * 1.05, **kw)
out["broken"] = ext.check((16, 16, 4)).to_dict()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted() -> dict[str, Any]:
    return run_python_json(_CODE, env={"TRITON_INTERPRET": "1"}, timeout=900)


@pytest.mark.parametrize("index", range(6))
def test_extend_matches_reference(interpreted: dict[str, Any], index: int) -> None:
    r = interpreted["extend"][index]
    assert r["ok"] and r["unwritten"] == 0 and 0 < r["error"] <= r["bound"], r


@pytest.mark.parametrize("index", range(3))
def test_prefill_matches_reference(interpreted: dict[str, Any], index: int) -> None:
    r = interpreted["prefill"][index]
    assert r["ok"] and r["unwritten"] == 0 and r["error"] <= r["bound"], r


def test_extend_tile_reaches_the_launch(interpreted: dict[str, Any]) -> None:
    launch = interpreted["extend_launch"]
    assert (launch["BLOCK_M"], launch["BLOCK_N"], launch["num_warps"]) == (32, 16, 2)


def test_prefill_tile_reaches_the_launch(interpreted: dict[str, Any]) -> None:
    launch = interpreted["prefill_launch"]
    assert (launch["BLOCK_M"], launch["BLOCK_N"], launch["num_warps"]) == (16, 16, 2)
    assert launch["grid"][2] == 3  # cdiv(max_len 40, 16), as SGLang computes it


def test_check_catches_a_wrong_kernel(interpreted: dict[str, Any]) -> None:
    bad = interpreted["broken"]
    assert not bad["ok"] and bad["error"] > bad["bound"], bad


def test_error_bounds() -> None:
    assert att.error_bound("bfloat16") == pytest.approx(4 * 2**-8)
    assert att.error_bound("float16") == pytest.approx(4 * 2**-11)
    assert att.error_bound("float32") == pytest.approx(8 * 2**-11)  # TF32 dots: four operand roundings + scores


def test_sglang_tiles_follow_its_capability_branches() -> None:
    """SGLang 0.5.23's own choices (docs/attention.md): sm_89 64x128 for head dim <= 128,
    the Hopper branch's 32x64 for MLA; context attention BLOCK 128 above capability 8.x."""
    assert att.sglang_extend_tile(128, 128, (8, 9)) == (64, 128, 8)
    assert att.sglang_extend_tile(64, 64, (8, 9)) == (64, 128, 4)
    assert att.sglang_extend_tile(576, 512, (9, 0)) == (32, 64, 8)
    assert att.sglang_prefill_tile(64, (8, 9)) == (64, 4)
    assert att.sglang_prefill_tile(128, (12, 0)) == (128, 8)


def test_cases_validate() -> None:
    with pytest.raises(ValueError, match="variant"):
        att.ExtendCase(64, 64, 4, 2, (1,), (0,), "bidirectional")
    with pytest.raises(ValueError, match="multiple"):
        att.ExtendCase(64, 64, 3, 2, (1,), (0,))
    wl = att.ExtendCase.workload("decode-heavy", 576, 512)
    assert (wl.q_heads, wl.kv_heads, len(wl.extend_lens), wl.prefix_lens[0]) == (16, 1, 64, 2048)
