"""FP8 experts on GPUs without e4m3 (sm_80-sm_88), on the CPU: the route, the tile, the kernel.

* the route and the tile, pure functions of a GpuSpec;
* the kernel through Triton's interpreter (one subprocess with ``TRITON_INTERPRET=1``: the
  interpreter must be on before the kernel module is imported, and the oracle tests of this
  session need the compiled kernel): the e4m3 decoder against torch for all 256 codes, and whole
  layers against float32 references (:mod:`sglang_consumer_gpu.fp8.layer`);
* the oracle: every tile the plugin picks on sm_86 GPUs compiled for sm_86, sm_89 and sm_120;
* the route against SGLang 0.5.23's own code: its ``fused_experts_impl`` on virtual GPUs through
  Triton's real launch path (``emulation.no_gpu``), with and without the plugin.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sglang_consumer_gpu.families import fp8 as fp8_family
from sglang_consumer_gpu.fp8.route import (
    SGLANG,
    UNSUPPORTED_OPTIONS,
    WEIGHT_ONLY,
    MoeCall,
    route,
    weight_only_gpu,
)
from sglang_consumer_gpu.fp8.tiles import shared_bound, weight_only_config
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.smem import estimate_shared
from sglang_consumer_gpu.moe.validate import tile_label
from sglang_consumer_gpu.patches import fp8_weight_only_moe, moe_config
from tests.conftest import run_python_json

REPO = Path(__file__).resolve().parents[1]
RTX_3090 = find_gpu("NVIDIA GeForce RTX 3090")
LIMIT = 101_376
SM86_GPUS = ("NVIDIA GeForce RTX 3090", "NVIDIA RTX A6000", "NVIDIA A10", "NVIDIA A40")
QWEN3_FP8 = MoeShape(128, 768, 2048, 8, "fp8_w8a8", (128, 128))


# ------------------------------------------------------------------------------ route


@pytest.mark.parametrize(
    ("gpu", "kind"),
    [
        *((g, WEIGHT_ONLY) for g in SM86_GPUS),
        ("NVIDIA A100-SXM4-80GB", WEIGHT_ONLY),
        ("NVIDIA GeForce RTX 4090", SGLANG),
        ("NVIDIA L40S", SGLANG),
        ("NVIDIA GeForce RTX 5090", SGLANG),
        ("NVIDIA H100 80GB HBM3", SGLANG),
        ("Tesla T4", SGLANG),
    ],
)
def test_route_per_gpu(gpu: str, kind: str) -> None:
    spec = find_gpu(gpu)
    got, why = route(spec, MoeCall(fp8_weights=True, activations="bfloat16"))
    assert got == kind, why
    assert weight_only_gpu(spec) is (kind == WEIGHT_ONLY) is fp8_weight_only_moe.PATCH.needed_on(spec)
    if kind == WEIGHT_ONLY:
        assert "fp8e4nv not supported" in why


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (MoeCall(False, "bfloat16"), "not an fp8-weight call"),
        (MoeCall(True, "float8_e4m3fn"), "float8_e4m3fn, not bf16/fp16"),
        (MoeCall(True, "float32"), "float32, not bf16/fp16"),
        (MoeCall(True, "bfloat16", ("c_sorted",)), "does not implement c_sorted"),
    ],
)
def test_calls_the_kernel_does_not_implement_stay_sglangs(call: MoeCall, reason: str) -> None:
    kind, why = route(RTX_3090, call)
    assert kind == SGLANG and reason in why
    assert route(RTX_3090, MoeCall(True, "float16"))[0] == WEIGHT_ONLY


def test_every_unsupported_option_is_a_parameter_of_sglangs_launcher() -> None:
    assert set(UNSUPPORTED_OPTIONS) <= set(fp8_weight_only_moe.SEAMS[-1].params)


def test_the_call_description_reads_options_and_dtypes() -> None:
    import torch

    a = torch.empty(2, 4, dtype=torch.bfloat16, device="meta")
    b = torch.empty(1, 4, 4, dtype=torch.float8_e4m3fn, device="meta")
    args = {"A": a, "B": b, "use_fp8_w8a8": True, "a_output_slices": 1, "B_zp": None, "c_sorted": False}
    assert fp8_weight_only_moe.describe(args) == MoeCall(True, "bfloat16", ())
    args.update(a_output_slices=2, B_zp=b, c_sorted=True)
    assert fp8_weight_only_moe.describe(args).options == ("c_sorted", "a_output_slices", "B_zp")
    assert not fp8_weight_only_moe.describe({**args, "B": b.to(torch.bfloat16)}).fp8_weights


# ------------------------------------------------------------------------------ tiles


@pytest.mark.parametrize("gpu", [*SM86_GPUS, "NVIDIA A100-SXM4-80GB"])
def test_the_tile_keeps_sglangs_row_block_and_fits(gpu: str) -> None:
    spec = find_gpu(gpu)
    for shape in (
        QWEN3_FP8,
        dataclasses.replace(QWEN3_FP8, block_shape=None),
        MoeShape(256, 256, 7168, 8, "fp8_w8a8", (128, 128)),
    ):
        for M in (1, 3, 16, 100, 256, 1000, 4096):
            for bm in (16, 32, 64, 128, 256):
                cfg = weight_only_config(M, shape, spec, bm)
                assert cfg["BLOCK_SIZE_M"] == bm
                assert shared_bound(cfg, shape, spec) <= spec.smem_per_block_optin, (M, bm, cfg)
                if shape.block_shape:
                    assert shape.block_shape[1] % cfg["BLOCK_SIZE_K"] == 0


def test_a_tile_that_fits_fp8_w8a8_is_resized_for_two_byte_activations() -> None:
    """128x256x128 at 3 stages fits the fp8_w8a8 budget (1-byte activations) but not this kernel's."""
    asked = {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 256, "BLOCK_SIZE_K": 128, "num_stages": 3}
    assert estimate_shared(asked, "fp8_w8a8", None, (8, 6)) == 98_304 <= LIMIT
    assert shared_bound(asked, dataclasses.replace(QWEN3_FP8, block_shape=None), RTX_3090) == 131_072 > LIMIT
    cfg = weight_only_config(4096, QWEN3_FP8, RTX_3090, block_m=128)
    assert cfg["BLOCK_SIZE_M"] == 128 and shared_bound(cfg, QWEN3_FP8, RTX_3090) <= LIMIT


# ------------------------------------------------------------------------------ the kernel, interpreted


#: (scheme, activation dtype, E, N, K, topk, M, idle experts, forced config or None, an expert marked -1 or None)
CASES: list[tuple[Any, ...]] = [
    ("block", "bfloat16", 4, 128, 256, 2, 1, 0, None, None),
    ("block", "bfloat16", 4, 128, 256, 2, 5, 1, None, None),
    ("block", "float16", 4, 128, 256, 2, 33, 2, None, None),
    ("channel", "bfloat16", 4, 128, 256, 2, 33, 0, None, None),
    ("channel", "float16", 4, 128, 256, 2, 5, 1, None, None),
    ("tensor", "bfloat16", 4, 128, 256, 2, 5, 0, None, None),
    ("tensor", "float16", 4, 128, 256, 3, 1, 0, None, None),
    # K off the K step (masked tail, three scale blocks along K), a 32-row block
    ("block", "bfloat16", 4, 128, 320, 2, 33,
     1, {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 2, "num_warps": 4, "num_stages": 2}, None),
    # N off the N tile (wrapped columns never stored) and off the down GEMM's K step
    ("channel", "bfloat16", 4, 80, 256, 2, 17,
     0, {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 3}, None),
    # an expert on another rank (its blocks marked -1): its slots must be zeros
    ("block", "bfloat16", 4, 128, 256, 2, 33, 0, None, 1),
]  # fmt: skip

_CODE = """
import json
import numpy as np
import torch
import triton.language as tl
from triton.runtime import interpreter

# Triton 3.8's interpreter hands bf16 operands to numpy's matmul as their uint16 bit patterns
# (create_dot); a GPU multiplies the values. bf16 products are exact in float32, so the values
# as float32 are what the tensor cores multiply.
_dot = interpreter.InterpreterBuilder.create_dot
def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
    def as_f32(h):
        if h.dtype.scalar == tl.bfloat16:
            return interpreter.TensorHandle((h.data.astype(np.uint32) << 16).view(np.float32), tl.float32)
        return h
    return _dot(self, as_f32(a), as_f32(b), d, input_precision, max_num_imprecise_acc)
interpreter.InterpreterBuilder.create_dot = create_dot

from sglang_consumer_gpu.fp8.layer import make_layer, reference_gemms, reference_layer, run_layer, row_error
from sglang_consumer_gpu.fp8.ops import decode_e4m3, fused_moe_weight_only
from sglang_consumer_gpu.measure.moe import torch_align

out = {"decode": {}, "cases": []}
codes = torch.arange(256, dtype=torch.uint8)
want = codes.view(torch.float8_e4m3fn).float()
for dt in ("bfloat16", "float16"):
    got = decode_e4m3(codes, getattr(torch, dt)).float()
    same = ((got == want) & (torch.signbit(got) == torch.signbit(want))) | (got.isnan() & want.isnan())
    out["decode"][dt] = [int(c) for c in codes[~same]]

def gemm_with(config):
    return lambda *a, **k: fused_moe_weight_only(*a, **k, config=config)

for scheme, act, E, N, K, topk, M, idle, config, off_rank in __CASES__:
    layer = make_layer(E, N, K, topk, M, scheme, getattr(torch, act), idle=idle, seed=M + E)
    bm = config["BLOCK_SIZE_M"] if config else 16
    sorted_ids, expert_ids, num_post = torch_align(layer.topk_ids, bm, E)
    if off_rank is not None:
        expert_ids[expert_ids == off_rank] = -1
    run = run_layer(layer, (sorted_ids, expert_ids, num_post), bm, gemm_with(config) if config else fused_moe_weight_only)
    ref1, ref2 = reference_gemms(layer, run.a2, zero_experts=() if off_rank is None else (off_rank,))
    row = {"up": row_error(run.c1, ref1), "down": row_error(run.c2, ref2), "configs": list(run.configs)}
    if off_rank is None:
        row["layer"] = row_error(run.out, reference_layer(layer))
    else:
        mask = layer.topk_ids == off_rank
        row["off_rank_slots"] = int(mask.sum())
        row["off_rank_zero"] = bool((run.c2[mask] == 0).all()) and bool((run.c1.reshape(M, topk, -1)[mask] == 0).all())
    out["cases"].append(row)

# one GEMM with a bias and the routing weights applied on the input side (apply_router_weight_on_input)
layer = make_layer(4, 64, 128, 2, 9, "channel", torch.bfloat16, seed=3)
sorted_ids, expert_ids, num_post = torch_align(layer.topk_ids, 16, 4)
bias = torch.randn(4, 128).to(torch.bfloat16)
c1 = torch.full((18, 128), float("nan"), dtype=torch.bfloat16)
fused_moe_weight_only(layer.x, layer.w1, c1, layer.s1, layer.topk_weights, layer.topk_ids, sorted_ids, expert_ids,
                      num_post, mul_routed_weight=True, top_k=2, block_m=16, per_channel_quant=True, bias=bias)
ref1, _ = reference_gemms(layer, torch.zeros(18, 64, dtype=torch.bfloat16))
ids = layer.topk_ids.long().reshape(-1)
ref1 = (ref1 + bias.float()[ids]) * layer.topk_weights.reshape(-1, 1)
out["bias_routed_up"] = row_error(c1, ref1)

# the same check catches a 2 % scale error (the check can fail)
layer = make_layer(4, 128, 256, 2, 5, "block", torch.bfloat16, seed=1)
sorted_ids, expert_ids, num_post = torch_align(layer.topk_ids, 16, 4)
wrong = dataclasses.replace(layer, s1=layer.s1 * 1.02)
run = run_layer(wrong, (sorted_ids, expert_ids, num_post), 16, fused_moe_weight_only)
out["broken_up"] = row_error(run.c1, reference_gemms(layer, run.a2)[0])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted() -> dict[str, Any]:
    code = "import dataclasses\n" + _CODE.replace("__CASES__", repr(CASES))
    return run_python_json(code, env={"TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}, timeout=900)


def test_decoder_is_exact_for_every_e4m3_code(interpreted: dict[str, Any]) -> None:
    """All 256 bytes against torch's float8_e4m3fn -> float32: zeros with their sign, the seven
    subnormals each way, every normal up to 448, both NaNs."""
    assert interpreted["decode"] == {"bfloat16": [], "float16": []}


def _bounds(act: str) -> tuple[float, float]:
    from sglang_consumer_gpu.measure.moe import MoeCase, error_bound

    return error_bound(MoeCase(QWEN3_FP8, 1, act)), fp8_family.layer_bound(act)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_layer_matches_the_float32_reference(interpreted: dict[str, Any], index: int) -> None:
    """Both GEMMs against float32 from the inputs the kernel had (the bound of every fused-MoE
    check: one rounding of the output plus float32 summation order), the whole layer against
    float32 from x and the dequantized weights (:func:`~sglang_consumer_gpu.families.fp8.layer_bound`)."""
    act, off_rank = CASES[index][1], CASES[index][-1]
    r = interpreted["cases"][index]
    gemm, whole = _bounds(act)
    assert r["up"] <= gemm and r["down"] <= gemm, r
    if off_rank is None:
        assert r["layer"] <= whole, r
    else:
        assert r["off_rank_slots"] > 0 and r["off_rank_zero"], r


def test_bias_and_routing_weights_on_the_input_side(interpreted: dict[str, Any]) -> None:
    assert interpreted["bias_routed_up"] <= _bounds("bfloat16")[0]


def test_the_check_catches_a_two_percent_scale_error(interpreted: dict[str, Any]) -> None:
    assert interpreted["broken_up"] > _bounds("bfloat16")[0]


# ------------------------------------------------------------------------------ oracle


def _meta_gemm(spec: GpuSpec, shape: MoeShape, M: int, cfg: dict[str, int], act: str, up: bool) -> Any:
    """One GEMM of ``shape`` through the plugin's launcher on ``meta`` tensors, compiled for ``spec``."""
    import torch

    from sglang_consumer_gpu.fp8.ops import fused_moe_weight_only
    from sglang_consumer_gpu.oracle.capture import capture_launches

    m, dt = "meta", getattr(torch, act)
    E, N, K, topk = shape.E, shape.N, shape.K, shape.topk
    n_out, k_in = (2 * N, K) if up else (K, N)
    bm = cfg["BLOCK_SIZE_M"]
    padded = M * topk + E * (bm - 1)
    i32 = {"device": m, "dtype": torch.int32}
    if shape.block_shape:
        scale = torch.empty(E, -(-n_out // 128), -(-k_in // 128), device=m)
    elif shape.per_channel_quant:
        scale = torch.empty(E, n_out, 1, device=m)
    else:
        scale = torch.empty(E, device=m)
    A = torch.empty(M if up else M * topk, k_in, device=m, dtype=dt)
    C = (
        torch.empty(M * topk, n_out, device=m, dtype=dt)
        if up
        else torch.empty(M, topk, n_out, device=m, dtype=dt)
    )
    with capture_launches(spec) as launches:
        fused_moe_weight_only(
            A, torch.empty(E, n_out, k_in, device=m, dtype=torch.float8_e4m3fn), C, scale,
            torch.empty(M, topk, device=m), torch.empty(M, topk, **i32), torch.empty(padded, **i32),
            torch.empty(-(-padded // bm), **i32), torch.empty(1, **i32),
            mul_routed_weight=not up, top_k=topk if up else 1, block_m=bm, block_shape=shape.block_shape,
            per_channel_quant=shape.per_channel_quant, config=cfg,
        )  # fmt: skip
    (launch,) = launches
    return launch.resources


def _plugin_tiles(full: bool) -> dict[tuple[Any, ...], tuple[MoeShape, int, dict[str, int]]]:
    """Every distinct (tile, scale layout) the plugin picks on the sm_86 GPUs over the family's
    shapes and batch grid (not ``full``: on an RTX 3090, for the block-scaled reference layer, whose
    per-K-step scale loads make its tiles the largest of a layout, at the check grid)."""
    from sglang_consumer_gpu.families import moe as moe_family

    out: dict[tuple[Any, ...], tuple[MoeShape, int, dict[str, int]]] = {}
    for gpu in SM86_GPUS if full else SM86_GPUS[:1]:
        spec = find_gpu(gpu)
        for named in fp8_family.shapes(full) if full else fp8_family.SHAPES[:1]:
            for M in moe_family.FULL_GRID if full else moe_family.GRID:
                cfg = fp8_family.plugin_choice(spec, named.shape, M).config
                out.setdefault(
                    (fp8_family.scheme(named.shape), tuple(sorted(cfg.items()))), (named.shape, M, cfg)
                )
    return out


def _compile_all(full: bool, acts: tuple[str, ...], gemms: tuple[bool, ...]) -> list[tuple[Any, ...]]:
    rows = []
    for (scheme, _), (shape, M, cfg) in _plugin_tiles(full).items():
        for arch in ((8, 6), (8, 9), (12, 0)):
            spec = GpuSpec.for_arch(*arch)
            for act in acts:
                for up in gemms:
                    res = _meta_gemm(spec, shape, M, cfg, act, up)
                    rows.append((scheme, cfg, arch, act, up, res.shared, shared_bound(cfg, shape, spec)))
    return rows


def _assert_fit(rows: list[tuple[Any, ...]]) -> None:
    over = [r for r in rows if r[5] > LIMIT]
    above_bound = [r for r in rows if r[5] > r[6]]
    assert rows and not over and not above_bound, (over, above_bound)


def test_every_tile_fits_sm86_sm89_sm120_on_the_reference_grid() -> None:
    """(O) The tiles the plugin picks on an RTX 3090 for Qwen3-30B-A3B-FP8 (block scales) at the
    check grid, up GEMM, bf16, compiled for sm_86, sm_89 and sm_120: within 101,376 B and never
    above the shared-memory model the tile was sized with."""
    _assert_fit(_compile_all(False, ("bfloat16",), (True,)))


@pytest.mark.slow
def test_every_tile_fits_sm86_sm89_sm120_full() -> None:
    """(O) As above for every sm_86 GPU of the catalog, the full grid and layer list, both
    GEMMs, bf16 and fp16 (several minutes cold; cached on disk after)."""
    _assert_fit(_compile_all(True, ("bfloat16", "float16"), (True, False)))


def test_the_oracle_can_reject_a_tile() -> None:
    """The proof can fail: 128x256x128 at 3 stages, the fp8_w8a8-sized tile, needs 131,072 B here."""
    cfg = {
        "BLOCK_SIZE_M": 128,
        "BLOCK_SIZE_N": 256,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 1,
        "num_warps": 8,
        "num_stages": 3,
    }
    res = _meta_gemm(RTX_3090, dataclasses.replace(QWEN3_FP8, block_shape=None), 4096, cfg, "bfloat16", True)
    assert res.shared > LIMIT and not res.fits


# ------------------------------------------------------------------------------ SGLang's own code


@pytest.fixture
def sglang_moe(monkeypatch: pytest.MonkeyPatch) -> Any:
    """SGLang 0.5.23's fused-MoE module with its runtime config as a server without the fused
    sum/all-reduce publishes it (SGLang's own ``ExecMoe`` defaults)."""
    from sglang.srt.arg_groups.fields.exec_ import ExecMoe

    importlib.import_module(moe_config.LAUNCHER.module)
    fm = importlib.import_module("sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe")
    monkeypatch.setattr(fm, "get_exec", lambda: SimpleNamespace(moe=ExecMoe()))
    return fm


def _fused_experts(spec: GpuSpec, patched: bool, fm: Any, scheme: str) -> tuple[list[str], Any]:
    """SGLang's ``fused_experts_impl`` for a block/per-tensor fp8 layer with bf16 activations on
    ``spec``, through Triton's real launch path (nothing runs): the kernels launched, and the
    function its ``_fused_moe_kernel_sequence`` calls by the name ``invoke_fused_moe_kernel``."""
    import torch

    from sglang_consumer_gpu.emulation.no_gpu import emulated_gpu
    from sglang_consumer_gpu.families import on_gpu
    from sglang_consumer_gpu.oracle.kernels.moe import align_without_fill

    E, N, K, topk, M, m = 8, 256, 512, 2, 5, "meta"
    block = scheme == "block"
    s1 = torch.empty(E, 2 * N // 128, K // 128, device=m) if block else torch.empty(E, device=m)
    s2 = torch.empty(E, K // 128, N // 128, device=m) if block else torch.empty(E, device=m)
    with on_gpu(spec, patched=patched), align_without_fill(), emulated_gpu(spec) as launches:
        fm.fused_experts_impl(
            torch.empty(M, K, device=m, dtype=torch.bfloat16),
            torch.empty(E, 2 * N, K, device=m, dtype=torch.float8_e4m3fn),
            torch.empty(E, K, N, device=m, dtype=torch.float8_e4m3fn),
            torch.empty(M, topk, device=m), torch.empty(M, topk, device=m, dtype=torch.int32),
            inplace=True, use_fp8_w8a8=True, w1_scale=s1, w2_scale=s2, block_shape=[128, 128] if block else None,
        )  # fmt: skip
        bound = fm.invoke_fused_moe_kernel
    return [x.kernel for x in launches], bound


@pytest.mark.parametrize("gpu", ["NVIDIA GeForce RTX 3090", "NVIDIA A100-SXM4-80GB"])
@pytest.mark.parametrize("scheme", ["block", "tensor"])
def test_sglang_fails_on_ampere_and_the_plugin_serves(sglang_moe: Any, gpu: str, scheme: str) -> None:
    """SGLang's own fp8 path on a virtual sm_86 / sm_80 GPU raises Triton's fp8e4nv refusal; with
    the plugin, ``_fused_moe_kernel_sequence`` (its from-import copy re-bound) launches the
    weight-only kernel for both GEMMs."""
    from triton.compiler.errors import CompilationError

    spec = find_gpu(gpu)
    with pytest.raises(CompilationError, match="type fp8e4nv not supported in this architecture"):
        _fused_experts(spec, False, sglang_moe, scheme)
    kernels, bound = _fused_experts(spec, True, sglang_moe, scheme)
    assert kernels[:2] == [fp8_family.KERNEL] * 2, kernels
    assert getattr(bound, "__sglang_consumer_gpu_patch__", ("",))[0] == fp8_weight_only_moe.PATCH.name


@pytest.mark.parametrize("gpu", ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090"])
def test_the_plugin_stands_aside_where_sglangs_kernel_compiles(sglang_moe: Any, gpu: str) -> None:
    """On an RTX 4090 / 5090 SGLang's own fp8_w8a8 kernel runs both GEMMs, with the plugin active."""
    kernels, _ = _fused_experts(find_gpu(gpu), True, sglang_moe, "block")
    assert kernels[:2] == ["fused_moe_kernel"] * 2, kernels


def test_a_call_the_kernel_does_not_take_goes_to_sglang_with_one_log_line(
    sglang_moe: Any, caplog: Any
) -> None:
    """Pre-quantized activations (SGLANG_OPT_MOE_QUANT_ONCE) on a virtual RTX 3090: SGLang's own
    function answers (and Triton refuses it), the plugin says why once."""
    import torch
    import triton.language as tl
    from triton.compiler.errors import CompilationError

    from sglang_consumer_gpu.families import on_gpu
    from sglang_consumer_gpu.oracle.capture import capture_launches

    fk = importlib.import_module(moe_config.LAUNCHER.module)
    m, i32 = "meta", {"device": "meta", "dtype": torch.int32}
    args = (torch.empty(4, 256, device=m, dtype=torch.float8_e4m3fn), torch.empty(8, 512, 256, device=m, dtype=torch.float8_e4m3fn),
            None, torch.empty(8, 512, device=m, dtype=torch.bfloat16), torch.empty(4, 2, device=m),
            torch.empty(8, 4, 2, device=m), None, torch.empty(4, 2, device=m), torch.empty(4, 2, **i32),
            torch.empty(128, **i32), torch.empty(8, **i32), torch.empty(1, **i32), False, 2,
            {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1})  # fmt: skip
    kw = {"compute_type": tl.bfloat16, "use_fp8_w8a8": True, "use_int8_w8a8": False, "use_int8_w8a16": False,
          "use_int4_w4a16": False, "per_channel_quant": False, "block_shape": [128, 128]}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu"), on_gpu(RTX_3090):
        for _ in range(2):
            with pytest.raises(CompilationError, match="fp8e4nv"), capture_launches(RTX_3090, cache=False):
                fk.invoke_fused_moe_kernel(*args, **kw)
    lines = [r.getMessage() for r in caplog.records if "left to SGLang" in r.getMessage()]
    assert len(lines) == 1 and "float8_e4m3fn, not bf16/fp16" in lines[0], lines


def test_upstream_fix_is_recognised_from_marlins_signature() -> None:
    fixed = (
        "def fused_marlin_moe(hidden_states, w1, w2, num_bits: int = 8, is_fp8: bool = False):\n    pass\n"
    )
    assert fp8_weight_only_moe.marlin_has_fp8(fixed)
    assert not fp8_weight_only_moe.marlin_has_fp8(fixed.replace("is_fp8", "is_k_full"))
    assert not fp8_weight_only_moe.marlin_has_fp8(
        fp8_weight_only_moe._installed_marlin_source()
    )  # 0.5.23: not yet
    assert fp8_weight_only_moe._installed_marlin_source() is not None


# ------------------------------------------------------------------------------ the tools


def test_check_area_compiles_what_the_patched_launcher_runs() -> None:
    """The first items of ``check``'s fp8-moe area on an RTX 3090: SGLang's launcher, patched,
    ran the weight-only kernel with the planned tile, inside the GPU (a decode and a prefill tile)."""
    from sglang_consumer_gpu.checks.registry import Session

    provider = fp8_family.Fp8MoeProvider()
    with Session(RTX_3090) as session:
        listing = session.list_items([provider], full=False)
        picked = [listing.items[0], *(i for i in listing.items if " M=4096 " in i.config)][:2]
        done = [x for batch in session.finish(picked) for x in batch]
    assert len(done) == 2 and all(x.ok and x.kernel.startswith(fp8_family.KERNEL) for x in done), done


def test_check_says_why_elsewhere() -> None:
    items = list(fp8_family.Fp8MoeProvider().items(find_gpu("NVIDIA GeForce RTX 4090"), full=False))
    assert len(items) == 1 and items[0].status == "SKIP" and "has fp8 e4m3" in items[0].skip
    assert not list(fp8_family.Fp8MoeBaseline().items(find_gpu("NVIDIA GeForce RTX 4090"), full=False))


def test_selftest_plans_the_weight_only_cases_on_the_cpu() -> None:
    from sglang_consumer_gpu.selftest.plan import build_plan

    plan = build_plan(RTX_3090, sglang="0.5.23", quick=True)
    fp8 = [c for c in plan.cases if c.area == "fp8-moe"]
    assert [c.name for c in fp8][:2] == [
        "e4m3 decode, 256 codes -> bfloat16",
        "e4m3 decode, 256 codes -> float16",
    ]
    layers = [c for c in fp8 if c.run is not None and c.kernel == fp8_family.KERNEL]
    assert len(layers) == 4 and all(c.skip is None for c in layers)
    for c in layers:
        pick = fp8_family.plugin_choice(RTX_3090, c.run.shape, c.run.M)
        assert dict(c.run.tile) == pick.config and c.config == tile_label(pick.config)
    assert not [
        c for c in plan.cases if c.area == "moe" and "fp8" in c.name
    ]  # the moe family hands them over
    elsewhere = build_plan(find_gpu("NVIDIA GeForce RTX 4090"), sglang="0.5.23", quick=True)
    (skip,) = [c for c in elsewhere.cases if c.area == "fp8-moe"]
    assert skip.skip and "sm_89 has fp8 e4m3" in skip.skip


def test_doctor_model_states_the_path_and_its_cost() -> None:
    from sglang_consumer_gpu.models import load_model
    from sglang_consumer_gpu.models.launch import Launch
    from sglang_consumer_gpu.planner.constraints import FAIL, check_constraints

    desc = load_model(str(REPO / "tests/fixtures/models/Qwen3-30B-A3B-FP8"))
    launch = Launch(argv=(), tp=2)
    rows, notes = fp8_family.FAMILY.planner_rows(RTX_3090, desc, launch, compile=False)
    assert rows and all(r.plugin_fit.fits and r.sglang_fit.fits is False for r in rows)
    assert "fp8e4nv" in rows[0].sglang_fit.how and rows[0].kernel == "fused_moe fp8 weight-only"
    assert len(notes) == 1 and "13.50 GiB of experts per GPU, 27.00 GiB as bf16" in notes[0]
    assert not [f for f in check_constraints(RTX_3090, desc, launch) if f.severity == FAIL]
    assert fp8_family.FAMILY.planner_rows(
        find_gpu("NVIDIA GeForce RTX 4090"), desc, launch, compile=False
    ) == ([], [])


def test_doctor_model_fails_where_the_patch_has_no_seam(monkeypatch: pytest.MonkeyPatch) -> None:
    from sglang_consumer_gpu import versions
    from sglang_consumer_gpu.models import load_model
    from sglang_consumer_gpu.models.launch import Launch

    monkeypatch.setattr(versions, "sglang_version", lambda: "0.5.15")
    desc = load_model(str(REPO / "tests/fixtures/models/Qwen3-30B-A3B-FP8"))
    rows, _ = fp8_family.FAMILY.planner_rows(RTX_3090, desc, Launch(argv=(), tp=2), compile=False)
    assert rows and all(
        r.plugin_fit.fits is False and "0.5.15 is not covered" in r.plugin_fit.how for r in rows
    )
