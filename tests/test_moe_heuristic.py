"""The heuristic as a pure function: fits by construction, follows the regimes, honours block quant."""

from __future__ import annotations

import itertools

import pytest

from sglang_consumer_gpu.hardware import KNOWN_GPUS, find_gpu
from sglang_consumer_gpu.moe.heuristic import (
    ALONE_BLOCKS_PER_SM,
    _blocks_per_sm,
    batch_bucket,
    heuristic_config,
)
from sglang_consumer_gpu.moe.shape import STANDARD_BATCH_GRID, MoeShape
from sglang_consumer_gpu.moe.smem import estimate_shared

SHAPES = [
    MoeShape(128, 768, 2048, 8),  # Qwen3-30B-A3B
    MoeShape(128, 768, 2048, 8, "fp8_w8a8"),
    MoeShape(128, 768, 2048, 8, "fp8_w8a8", (128, 128)),
    MoeShape(64, 1408, 2048, 6),  # DeepSeek-V2-Lite
    MoeShape(8, 7168, 4096, 2),  # Mixtral-8x7B TP2
    MoeShape(8, 14336, 4096, 2, "fp8_w8a8"),
    MoeShape(128, 1536, 4096, 8, "fp8_w8a8", (128, 128)),  # Qwen3-235B-A22B TP2
    MoeShape(128, 384, 4096, 8, "fp8_w8a8"),  # Qwen3-235B-A22B TP4
    MoeShape(512, 512, 2048, 10),  # Qwen3-Next
    MoeShape(128, 704, 4096, 8, "fp8_w8a8"),  # GLM-4.5-Air TP2
    MoeShape(32, 2880, 2880, 4),  # gpt-oss-20b
    MoeShape(256, 64, 7168, 8, "int8_w8a8", per_channel_quant=True),  # DeepSeek-R1 channel-INT8 TP32
]
LOW_SMEM = [g for g in KNOWN_GPUS if g.is_low_smem]


@pytest.mark.parametrize("spec", LOW_SMEM, ids=lambda g: g.name)
def test_fits_every_low_smem_gpu_by_construction(spec):
    for shape, M in itertools.product(SHAPES, (*STANDARD_BATCH_GRID, 3, 100, 8192, 20000)):
        cfg = heuristic_config(M, shape, spec)
        need = estimate_shared(cfg, shape.dtype, shape.block_shape, spec.capability)
        assert need <= spec.smem_per_block_optin, (spec.name, shape.label, M, cfg, need)


def test_regimes_on_rtx_4090():
    spec = find_gpu("RTX 4090")
    qwen = SHAPES[0]
    decode = heuristic_config(1, qwen, spec)
    prefill = heuristic_config(4096, qwen, spec)
    assert decode["BLOCK_SIZE_M"] == 16  # memory-bound: no wasted rows
    assert prefill["BLOCK_SIZE_M"] >= 64 and prefill["BLOCK_SIZE_N"] >= 64  # compute-bound: big tiles
    assert prefill["num_stages"] >= 2
    # Bigger batch -> never a smaller M tile.
    bms = [heuristic_config(M, qwen, spec)["BLOCK_SIZE_M"] for M in STANDARD_BATCH_GRID]
    assert bms == sorted(bms)


def test_block_quant_k_tile_divides_quant_block():
    spec = find_gpu("RTX 4090")
    for shape in (s for s in SHAPES if s.block_shape):
        for M in STANDARD_BATCH_GRID:
            cfg = heuristic_config(M, shape, spec)
            assert shape.block_shape[1] % cfg["BLOCK_SIZE_K"] == 0, (shape.label, M, cfg)


def test_k_tile_and_pipeline_follow_the_shorter_reduction():
    """v2: BLOCK_SIZE_K pads neither reduction (w1: K, w2: N) by more than 1/8, and the pipeline
    is no deeper than the shorter K loop has steps, plus one (docs/moe.md, "Heuristic v2");
    v4: where a block is alone on its SM, w1's loop (over K) bounds it instead."""
    spec = find_gpu("RTX 4090")
    for shape, M in itertools.product(SHAPES, STANDARD_BATCH_GRID):
        cfg = heuristic_config(M, shape, spec)
        bk = cfg["BLOCK_SIZE_K"]
        for length in (shape.N, shape.K):
            assert bk <= 32 or (-length) % bk <= length / 8, (shape.label, M, cfg)
        alone = _blocks_per_sm(M * shape.topk, shape, spec) <= ALONE_BLOCKS_PER_SM
        steps = -(-(shape.K if alone else min(shape.N, shape.K)) // bk)
        assert cfg["num_stages"] <= max(2, steps + 1), (shape.label, M, cfg)


def test_a_block_alone_on_its_sm_takes_the_deep_pipeline():
    """v4: DeepSeek-V3 at TP8 (N = 256, K = 7168): at M = 1 the grid has 0.5 blocks per SM and
    w1's 56-step loop sets the depth (H200, fp8 16x32x128: 5 stages 25.5 us, 3 stages 34.1 us);
    at M = 4 (1.9 blocks per SM) w2's 2-step loop caps it at 3 again (bf16 3 stages 91.6 us,
    5 stages 111.6 us)."""
    spec = find_gpu("RTX 4090")
    for dtype in (None, "fp8_w8a8"):
        dsv3 = MoeShape(256, 256, 7168, 8, dtype)
        assert heuristic_config(1, dsv3, spec)["num_stages"] == 5
        assert heuristic_config(4, dsv3, spec)["num_stages"] == 3


def test_decode_k_tile_on_a_short_intermediate_size():
    """Qwen3-235B-A22B at TP4 (N = 384): 256-deep K tiles pad w2's reduction by a third and
    measured 0.82-0.93x the best at M <= 64 on the H100; Qwen3-30B-A3B (N = 768) keeps them."""
    spec = find_gpu("RTX 4090")
    tp4 = heuristic_config(4, MoeShape(128, 384, 4096, 8, "fp8_w8a8"), spec)
    assert (tp4["BLOCK_SIZE_K"], tp4["num_stages"]) == (128, 4)
    q30 = heuristic_config(4, MoeShape(128, 768, 2048, 8, "fp8_w8a8"), spec)
    assert (q30["BLOCK_SIZE_K"], q30["num_stages"]) == (256, 4)


def test_decode_end_follows_the_blocks_per_sm():
    """v3: while the grid gives fewer than two blocks per SM (at BLOCK_SIZE_N 64), the decode tile
    is 16x32x128 for both widths (H100, M = 1 of six shapes: fp8 128-deep 0.95-1.00x the best vs
    0.83-1.00x for 256-deep); with more blocks 16-bit takes 16x64x128 with 4 stages (M = 4:
    0.993-1.000x, the v2 tile 0.95-1.00x) and 8-bit keeps 16x32x256 (docs/moe.md, v3)."""
    spec = find_gpu("RTX 4090")
    bf16, fp8 = MoeShape(128, 768, 2048, 8), MoeShape(128, 768, 2048, 8, "fp8_w8a8")
    tile = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_stages")
    for shape in (bf16, fp8):
        assert tuple(heuristic_config(1, shape, spec)[k] for k in tile) == (16, 32, 128, 5)
    assert tuple(heuristic_config(4, bf16, spec)[k] for k in tile) == (16, 64, 128, 4)
    assert tuple(heuristic_config(4, fp8, spec)[k] for k in tile) == (16, 32, 256, 4)
    # Mixtral (8 experts, top-2): at M = 2 only ~4 experts are active, still starved on 128 SMs;
    # a GPU with fewer SMs fills up at fewer blocks
    mixtral = MoeShape(8, 7168, 4096, 2)
    assert heuristic_config(2, mixtral, spec)["BLOCK_SIZE_N"] == 32
    assert heuristic_config(2, mixtral, find_gpu("L4"))["BLOCK_SIZE_N"] == 64


def test_pure_and_cached_per_bucket():
    spec = find_gpu("L40S")
    shape = SHAPES[1]
    a = heuristic_config(300, shape, spec)
    b = heuristic_config(512, shape, spec)
    assert a == b and a is not b  # same bucket, fresh dicts (SGLang pops keys from configs)
    a["BLOCK_SIZE_M"] = 1
    assert heuristic_config(300, shape, spec)["BLOCK_SIZE_M"] != 1
    assert batch_bucket(1) == 1 and batch_bucket(3) == 4 and batch_bucket(4096) == 4096


def test_bad_input():
    with pytest.raises(ValueError):
        MoeShape(0, 768, 2048, 8)
    with pytest.raises(ValueError):
        MoeShape(8, 768, 2048, 9)
    with pytest.raises(ValueError):
        heuristic_config(0, SHAPES[0], find_gpu("RTX 4090"))
