"""Block-FP8 MoE under ``--moe-runner-backend cutlass``, routed to SGLang's Triton fused MoE on sm_120,
against the real SGLang 0.5.23 (``sglang.srt.layers.moe.cutlass_moe`` imports on a CPU machine; its
CUDA names are bound only with CUDA, so SGLang's own function fails here where it would raise
``No implemented fp8_blockwise_scaled_grouped_mm`` on an sm_120 GPU).

The numerical check runs the routed call through Triton's interpreter in a subprocess (fp16: the
interpreter computes bf16 dots wrongly, ``tests/test_measure_moe.py``), with the stand-ins
``families.cutlass_moe.outside_a_server`` records: SGLang's exec defaults, no TP group, torch's
routing sort (SGLang's needs sgl-kernel) and torch's activation quantizer (SGLang's Triton one
gives wrong e4m3 values under the interpreter). Everything else is SGLang's.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

from sglang_consumer_gpu.families import FAMILIES
from sglang_consumer_gpu.families.base import on_gpu
from sglang_consumer_gpu.families.cutlass_moe import FAMILY, CutlassMoeProvider, faithful_bound
from sglang_consumer_gpu.hardware import find_gpu, override_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.item import SKIP, finish
from sglang_consumer_gpu.patches import cutlass_moe_fp8
from sglang_consumer_gpu.patching import registry
from sglang_consumer_gpu.patching.base import Status
from tests.conftest import run_python_json

RTX_3090, RTX_4090, RTX_5090 = "NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090"


def _module() -> Any:
    return importlib.import_module(cutlass_moe_fp8.MODULE)


def _installed(module: Any) -> bool:
    marker = getattr(getattr(module, cutlass_moe_fp8.ATTR), registry.MARKER, None)
    return marker is not None and marker[0] == cutlass_moe_fp8.PATCH.name


@pytest.mark.parametrize(
    ("name", "routed"),
    [(RTX_3090, False), (RTX_4090, False), (RTX_5090, True), ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", True),
     ("NVIDIA H100 80GB HBM3", False)],
)  # fmt: skip
def test_routing_decision_on_virtual_gpus(name: str, routed: bool) -> None:
    """Only sm_12x routes; on sm_8x SGLang refuses cutlass MoE itself, sm_90 has sgl-kernel's kernel.
    Decided by the registry against the real module, as in a server on that GPU."""
    spec = find_gpu(name)
    assert cutlass_moe_fp8.needed_on(spec) is routed
    assert FAMILY.active(spec) is routed
    module = _module()
    # Decided afresh for this GPU (an installed patch stays installed, and its guard decides per call).
    registry.revert_all(sglang_only=True)
    with on_gpu(spec, patched=True):
        result = registry.results()[cutlass_moe_fp8.PATCH.name]
        assert _installed(module) is routed, result
        assert result.status is (Status.APPLIED if routed else Status.NOT_NEEDED), result
        if routed:
            assert "Triton fused MoE" in result.detail and "No implemented" in result.detail
        elif spec.capability[0] == 8:
            assert "refused by SGLang itself" in result.detail
        else:
            assert "sgl-kernel's CUTLASS sm90 grouped GEMM" in result.detail
    with on_gpu(spec, patched=False):
        assert not _installed(module)


def test_the_architecture_fact() -> None:
    assert find_gpu(RTX_5090).sgl_kernel_fp8_grouped_mm is None
    assert GpuSpec.for_arch(12, 1).sgl_kernel_fp8_grouped_mm is None
    assert find_gpu(RTX_4090).sgl_kernel_fp8_grouped_mm is None  # no kernel, but SGLang refuses first
    assert GpuSpec.for_arch(10, 0).sgl_kernel_fp8_grouped_mm == "CUTLASS sm100 grouped GEMM"
    assert not cutlass_moe_fp8.needed_on(GpuSpec.for_arch(10, 0))
    assert cutlass_moe_fp8.needed_on(GpuSpec.for_arch(12, 1))


def test_version_gates() -> None:
    """Seams from 0.5.11 (the Triton runner's module), ``swiglu_limit`` from 0.5.20; each seam is
    SGLang's real signature in 0.5.23 (the registry would report "target changed" otherwise)."""
    patch = cutlass_moe_fp8.PATCH
    assert patch.seam_for("0.5.10.post1") is None and patch.seam_for("0.4.9") is None
    assert "swiglu_limit" not in (patch.seam_for("0.5.19").params or ())
    seam = patch.seam_for("0.5.23")
    assert seam is not None and seam.params and seam.params[-1] == "swiglu_limit"
    import inspect

    have = tuple(inspect.signature(getattr(_module(), cutlass_moe_fp8.ATTR)).parameters)
    assert have == seam.params


def test_stands_down_where_sgl_kernel_has_the_sm120_kernel(tmp_path: Path) -> None:
    """The installed sgl-kernel (0.4.10) has no sm_120 group launcher: the patch acts. A library that
    carries it (sgl-project/sglang#28125's symbol) makes the probe answer "fixed"."""
    assert not cutlass_moe_fp8.sgl_kernel_has_sm120()
    assert not cutlass_moe_fp8.upstream_fixed(_module())
    with_kernel = tmp_path / "common_ops.abi3.so"
    with_kernel.write_bytes(b"\x7fELF..." + cutlass_moe_fp8.SM120_LAUNCHER + b"IN7cutlass...")
    without = tmp_path / "old.so"
    without.write_bytes(b"\x7fELF...launch_sm100_fp8_blockwise_scaled_group_mm")
    assert cutlass_moe_fp8._library_has(str(with_kernel))
    assert not cutlass_moe_fp8._library_has(str(without))


def _call(fn: Any, **changes: Any) -> Any:
    E, N, K, M, topk = 2, 128, 128, 3, 1
    w13 = torch.zeros(E, 2 * N, K, dtype=torch.float8_e4m3fn)
    w2 = torch.zeros(E, K, N, dtype=torch.float8_e4m3fn)
    args = {
        "a": torch.zeros(M, K, dtype=torch.float16),
        "w1_q": w13.transpose(1, 2),
        "w2_q": w2.transpose(1, 2),
        "w1_scale": torch.ones(E, K // 128, 2 * N // 128),
        "w2_scale": torch.ones(E, N // 128, K // 128),
        "topk_weights": torch.ones(M, topk),
        "topk_ids": torch.zeros(M, topk, dtype=torch.int32),
    }
    mxfp8 = changes.pop("use_mxfp8", False)
    args.update(changes)
    buffers = [torch.zeros(E, dtype=torch.int64)] * 13
    return fn(*args.values(), *buffers, use_fp8_blockscale=True, use_mxfp8=mxfp8)


def test_a_call_it_cannot_route_is_sglangs() -> None:
    """Weights that are not the layer's tensors transposed (a copy per call would be needed) and MXFP8
    go to SGLang's own function (here: it fails for want of CUDA, as it raises on sm_120); the
    registry counts the fallback and says why."""
    module = _module()
    with override_spec(find_gpu(RTX_5090)), on_gpu(find_gpu(RTX_5090), patched=True):
        fn = getattr(module, cutlass_moe_fp8.ATTR)
        assert _installed(module)
        before = registry.results()[cutlass_moe_fp8.PATCH.name].fallbacks
        contiguous_copy = torch.zeros(2, 128, 256, dtype=torch.float8_e4m3fn)  # [E, K, 2N] as stored
        with pytest.raises(NameError):  # SGLang's CUDA-only names: its own function ran
            _call(fn, w1_q=contiguous_copy)
        result = registry.results()[cutlass_moe_fp8.PATCH.name]
        assert result.fallbacks == before + 1
        assert "not the layer's" in result.last_error
        with pytest.raises(AssertionError, match="MXFP8 requires"):  # SGLang's own, called once
            _call(fn, use_mxfp8=True)
        assert registry.results()[cutlass_moe_fp8.PATCH.name].fallbacks == before + 1  # not a failure


def test_layout_problem_names_each_mismatch() -> None:
    f8 = torch.float8_e4m3fn
    a = torch.zeros(3, 256, dtype=torch.bfloat16)
    w1, w2 = torch.zeros(4, 512, 256, dtype=f8), torch.zeros(4, 256, 256, dtype=f8)
    s1, s2 = torch.ones(4, 4, 2), torch.ones(4, 2, 2)
    assert cutlass_moe_fp8.layout_problem(a, w1, w2, s1, s2) == ""
    assert "[128, 128] blocks" in cutlass_moe_fp8.layout_problem(a, w1, w2, torch.ones(4, 8, 4), s2)
    assert "do not chain" in cutlass_moe_fp8.layout_problem(a[:, :128], w1, w2, s1, s2)
    assert "float16/bfloat16" in cutlass_moe_fp8.layout_problem(a.float(), w1, w2, s1, s2)
    assert "float8_e4m3fn" in cutlass_moe_fp8.layout_problem(a, w1.to(torch.int8), w2, s1, s2)


_CODE = """
import json
from sglang_consumer_gpu.families.cutlass_moe import check_routed
print(json.dumps([check_routed(*c, act_dtype="float16", device="cpu", seed=i) for i, c in enumerate(%r)]))
"""
#: (E, N, K, topk, M): a ragged batch, and non-power-of-two widths with a K tail (K % 128 != 0).
CASES = [(4, 128, 256, 2, 5), (8, 256, 320, 3, 17)]


@pytest.fixture(scope="module")
def interpreted() -> list[dict[str, Any]]:
    env = {"TRITON_INTERPRET": "1", "SGLANG_CONSUMER_GPU_VIRTUAL": RTX_5090}
    return run_python_json(_CODE % (CASES,), env=env, timeout=900)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_routed_call_matches_the_float32_reference(interpreted: list[dict[str, Any]], index: int) -> None:
    r = interpreted[index]
    assert r["routed"] and r["patch"]["status"] == "applied", r
    assert r["returned_output_buffer"]  # SGLang's symmetric-memory buffer is the one written
    f = r["faithful"]
    assert f["unwritten"] == 0 and 0 < f["error"] <= f["bound"], r
    assert f["bound"] == faithful_bound("float16", r["case"]["N"], r["case"]["K"])
    # FP8 activations themselves: a few per cent, as e4m3's 3 mantissa bits make it, not garbage.
    assert 0.01 < r["unquantized_error"] < 0.1, r
    assert r["paths"]["align"].startswith("torch") and r["paths"]["quant"].startswith("torch")


def test_check_area_compiles_the_routed_tiles_for_sm120() -> None:
    """(O): every tile the routed calls ask for on an RTX 5090 compiles for sm_120 within 101,376 B."""
    spec = find_gpu(RTX_5090)
    items = list(CutlassMoeProvider().items(spec, full=False))
    assert len(items) >= 4
    done = [x for item in items for x in finish(item)]
    assert all(x.ok for x in done), [x.to_dict() for x in done if not x.ok]
    assert all(x.resources.shared <= spec.smem_per_block_optin for x in done)
    assert {x.kernel for x in done} >= {"fused_moe_kernel:up", "fused_moe_kernel:down"}


@pytest.mark.parametrize("name", [RTX_3090, RTX_4090])
def test_check_area_skips_where_nothing_is_routed(name: str) -> None:
    (item,) = CutlassMoeProvider().items(find_gpu(name), full=False)
    assert item.status == SKIP and "not routed here" in (item.skip or "")


def test_the_family_is_registered() -> None:
    assert FAMILY in FAMILIES
    assert [p.area for p in FAMILY.check_providers()] == ["cutlass-moe"]
