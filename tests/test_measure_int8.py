"""The int8 engine's routes and shapes on the CPU (the kernel's own checks: tests/test_int8_kernel.py)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from sglang_consumer_gpu.measure import int8
from tests.conftest import run_python_json

_CODE = """
import json
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.int8 import Int8Case, Int8Run

spec = find_gpu("RTX 4090")
out = {}
for m, bias in ((5, False), (40, True)):
    run = Int8Run(Int8Case(m, 64, 128, "float16", bias), device="cpu", slots=3)
    tri = run.run("triton", spec=spec)
    out[f"agree_{m}"] = run.agree("triton", spec=spec)
    out[f"shape_{m}"] = list(tri(2).shape)
    out[f"int_mm_{m}"] = str(run.run("int_mm")(1).dtype)
    out[f"slots_{m}"] = run.slots
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted() -> dict[str, Any]:
    return run_python_json(_CODE, env={"TRITON_INTERPRET": "1"}, timeout=600)


@pytest.mark.parametrize("m", [5, 40])
def test_triton_route_agrees_with_the_torch_baseline(interpreted: dict[str, Any], m: int) -> None:
    """M = 5 goes through the baseline's zero padding (``_int_mm`` needs M > 16), M = 40 does not."""
    assert interpreted[f"agree_{m}"]
    assert interpreted[f"shape_{m}"] == [m, 64]
    assert interpreted[f"int_mm_{m}"] == "torch.int32"
    assert interpreted[f"slots_{m}"] == 3


def test_model_layers() -> None:
    assert len(int8.MODEL_LAYERS) == 24
    nk = int8.unique_nk()
    assert len(nk) == 23 and nk[0] == (6144, 4096)  # Llama-3-8B qkv_proj first
    assert all(n % 8 == 0 and k % 16 == 0 for n, k in nk)  # what int8_scaled_mm requires


def test_unknown_route() -> None:
    run = int8.Int8Run.__new__(int8.Int8Run)
    run.torch, run.case = None, int8.Int8Case(1, 8, 16)
    with pytest.raises(ValueError, match="route must be one of"):
        run.run("cutlass")


def test_job_is_picklable_and_groups_by_kernel_variant() -> None:
    a = int8.Int8Job(int8.Int8Case(1, 4096, 4096), (16, 64, 256, 8, 4, 4))
    b = int8.Int8Job(int8.Int8Case(1, 6144, 4096), (16, 64, 256, 8, 4, 4))
    assert pickle.loads(pickle.dumps(a)) == a
    assert a.key != b.key and a.group == b.group
