"""The Triton int8 GEMM on the CPU, through Triton's interpreter.

The numeric checks run in one subprocess with ``TRITON_INTERPRET=1`` (the
interpreter must be on before the kernel module is imported, and the oracle
tests in this session need the compiled kernel), using the engine's
``sglang_consumer_gpu.measure.int8.check_case``, the check every device run
uses: float64 reference, poisoned output buffers with guard rows/columns,
exact int32 accumulation vs int64 and ``torch._int_mm``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import run_python_json

REPO = Path(__file__).resolve().parents[1]

# (N, K, M, out dtype, bias, forced tile or None): M = 1, M off the tile grid,
# N a multiple of 8 but not 16, K shorter than / not a multiple of BLOCK_K
# (masked tail), K a multiple of BLOCK_K (unmasked), tiles from the table and
# forced 128-row / 256-row tiles.
CASES: list[tuple[int, int, int, str, bool, list[int] | None]] = [
    (64, 256, 1, "bfloat16", True, None),
    (72, 48, 7, "float16", False, None),
    (200, 256, 33, "bfloat16", False, None),
    (136, 96, 100, "float16", True, None),
    (128, 512, 130, "bfloat16", True, [128, 128, 128, 8, 8, 3]),
    (256, 160, 300, "float16", False, [256, 128, 64, 8, 8, 4]),
    (64, 64, 17, "bfloat16", False, [16, 64, 256, 8, 4, 4]),
]

_CODE = """
import json
import torch
from sglang_consumer_gpu.measure import int8 as c
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.int8.ops import int8_scaled_mm, int8_mm_int32
from sglang_consumer_gpu.int8.tiles import Tile

spec = find_gpu("RTX 4090")
gen = torch.Generator().manual_seed(0)
out = {{"cases": []}}
for n, k, m, dt, bias, tile in {cases!r}:
    t = Tile.from_list(tile) if tile else None
    r = c.check_case(n, k, m, dt, bias, spec=spec, gen=gen, device="cpu", tile=t)
    out["cases"].append(r)
out["extreme"] = c.extreme_case(spec, "cpu", k=4096)

# torch._int_mm (CPU) on the same inputs, bit for bit.
a = torch.randint(-128, 128, (40, 96), dtype=torch.int8, generator=gen)
w = torch.randint(-128, 128, (48, 96), dtype=torch.int8, generator=gen)
out["int_mm_equal"] = bool(torch.equal(int8_mm_int32(a, w.t()), torch._int_mm(a, w.t().contiguous())))

# A deliberately wrong epilogue must be caught by the same check (the check can fail).
import sglang_consumer_gpu.int8.ops as ops
real = ops.int8_scaled_mm
ops.int8_scaled_mm = lambda a, b, sa, sb, dt, bias=None, **kw: real(a, b, sa * 1.01, sb, dt, bias, **kw)
out["broken"] = c.check_case(64, 64, 20, "bfloat16", False, spec=spec, gen=gen, device="cpu")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted() -> dict[str, Any]:
    code = _CODE.format(cases=CASES)
    return run_python_json(code, env={"TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}, timeout=600)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_matches_float64_reference(interpreted: dict[str, Any], index: int) -> None:
    r = interpreted["cases"][index]
    assert r["over_bound"] == 0, r
    assert r["ok"], r


@pytest.mark.parametrize("index", range(len(CASES)))
def test_every_output_written_and_nothing_else(interpreted: dict[str, Any], index: int) -> None:
    r = interpreted["cases"][index]
    assert r["unwritten"] == 0, r
    assert r["guard_writes"] == 0, r


@pytest.mark.parametrize("index", range(len(CASES)))
def test_int32_accumulation_is_exact(interpreted: dict[str, Any], index: int) -> None:
    r = interpreted["cases"][index]
    assert r["int32_exact"], r
    if r["m"] > 16:
        assert r["int32_equals_int_mm"] is True, r


def test_extreme_accumulator(interpreted: dict[str, Any]) -> None:
    assert interpreted["extreme"]["ok"], interpreted["extreme"]


def test_int_mm_bit_exact(interpreted: dict[str, Any]) -> None:
    assert interpreted["int_mm_equal"]


def test_check_catches_a_wrong_epilogue(interpreted: dict[str, Any]) -> None:
    broken = interpreted["broken"]
    assert not broken["ok"] and broken["over_bound"] > 0, broken


# ------------------------------------------------------------- input checks

ERRORS = [
    ("a_fp16", "mat_a must be Int8"),
    ("a_3d", "mat_a must be a 2D tensor"),
    ("a_col_major", "mat_a must be a row major tensor"),
    ("b_row_major", "mat_b must be a column major tensor"),
    ("k_mismatch", "mat_a and mat_b shapes cannot be multiplied"),
    ("k_not_16", "mat_a.size(1) must be multiple of 16 for memory alignment"),
    ("n_not_8", "mat_b.size(1) must be multiple of 8 for memory alignment"),
    ("out_fp32", "out_dtype must be Half or BFloat16"),
    ("scales_a_size", "size of scales_a is not matched"),
    ("scales_b_size", "size of scales_b is not matched"),
    ("scales_a_fp16", "scales_a must be Float32"),
    ("scales_b_noncontig", "scales_b msut be contiguous"),
    ("bias_dtype", "bias dtype must match output dtype"),
    ("bias_size", "size of bias is not matched"),
]


def _inputs(case: str) -> tuple[Any, ...]:
    m, n, k = 4, 32, 64
    a = torch.zeros((m, k), dtype=torch.int8)
    b = torch.zeros((n, k), dtype=torch.int8).t()
    sa = torch.ones((m, 1))
    sb = torch.ones(n)
    dt = torch.bfloat16
    bias = None
    if case == "a_fp16":
        a = a.half()
    elif case == "a_3d":
        a = a[None]
    elif case == "a_col_major":
        a = torch.zeros((k, m), dtype=torch.int8).t()
    elif case == "b_row_major":
        b = b.contiguous()
    elif case == "k_mismatch":
        b = torch.zeros((n, k + 16), dtype=torch.int8).t()
    elif case == "k_not_16":
        a = torch.zeros((m, 40), dtype=torch.int8)
        b = torch.zeros((n, 40), dtype=torch.int8).t()
    elif case == "n_not_8":
        b = torch.zeros((30, k), dtype=torch.int8).t()
        sb = torch.ones(30)
    elif case == "out_fp32":
        dt = torch.float32
    elif case == "scales_a_size":
        sa = torch.ones(m + 1)
    elif case == "scales_b_size":
        sb = torch.ones(n - 1)
    elif case == "scales_a_fp16":
        sa = sa.half()
    elif case == "scales_b_noncontig":
        sb = torch.ones(2 * n)[::2]
    elif case == "bias_dtype":
        bias = torch.zeros(n, dtype=torch.float16)
    elif case == "bias_size":
        bias = torch.zeros(n + 8, dtype=dt)
    return a, b, sa, sb, dt, bias


@pytest.mark.parametrize(("case", "message"), ERRORS)
def test_input_checks_match_sgl_kernel(case: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same checks and messages as sgl-kernel 0.4.10 (strings read from its common_ops.so)."""
    from sglang_consumer_gpu.int8.ops import int8_scaled_mm

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # CPU tensors accepted; checks run before any launch
    with pytest.raises(RuntimeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        int8_scaled_mm(*_inputs(case))


def test_cpu_tensors_rejected_on_a_gpu_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from sglang_consumer_gpu.int8.ops import int8_scaled_mm

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="mat_a must be a CUDA tensor"):
        int8_scaled_mm(*_inputs("ok"))
