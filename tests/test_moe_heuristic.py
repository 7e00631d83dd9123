"""The heuristic as a pure function: fits by construction, follows the regimes, honours block quant."""

from __future__ import annotations

import itertools

import pytest

from sglang_consumer_gpu.hardware import KNOWN_GPUS, find_gpu
from sglang_consumer_gpu.moe.heuristic import (
    ALONE_BLOCKS_PER_SM,
    FEW_BLOCKS_PER_SM,
    SMALL_TOKENS,
    _blocks_per_sm,
    batch_bucket,
    expected_active_experts,
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
    MoeShape(8, 7168, 4096, 2, "fp8_w8a8", (128, 128)),  # long reductions, block-quantized
    MoeShape(160, 192, 5120, 8, "fp8_w8a8"),  # GLM-4.5 TP8
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


def _decode(M: int, shape: MoeShape) -> bool:
    routed = M * shape.topk
    return routed / expected_active_experts(routed, shape.E) <= SMALL_TOKENS


def test_k_tile_and_pipeline_follow_the_shorter_reduction():
    """v2, outside the decode regime: BLOCK_SIZE_K pads neither reduction (w1: K, w2: N) by more
    than 1/8, and the pipeline is no deeper than the shorter K loop has steps, plus one
    (docs/lab/moe.md, "Heuristic v2")."""
    spec = find_gpu("RTX 4090")
    checked = 0
    for shape, M in itertools.product(SHAPES, STANDARD_BATCH_GRID):
        if _decode(M, shape):
            continue
        cfg = heuristic_config(M, shape, spec)
        bk = cfg["BLOCK_SIZE_K"]
        for length in (shape.N, shape.K):
            assert bk <= 32 or (-length) % bk <= length / 8, (shape.label, M, cfg)
        assert cfg["num_stages"] <= max(2, -(-min(shape.N, shape.K) // bk) + 1), (shape.label, M, cfg)
        checked += 1
    assert checked > 50


TILE = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_stages")


def _tile(M: int, shape: MoeShape, gpu: str = "RTX 4090") -> tuple[int, ...]:
    return tuple(heuristic_config(M, shape, find_gpu(gpu))[k] for k in TILE)


def test_decode_tile_follows_the_blocks_per_sm():
    """v5 (docs/lab/moe.md, "Heuristic v5"; every BLOCK_SIZE_M 16 tile timed interleaved on the
    H200, results/h200/tune/decode_fit/): a block alone on its SM takes 16x32x128 at 5 stages,
    a few blocks per SM 128-byte K steps at 5 stages, more blocks 3 stages, and past eight
    16-bit doubles its K step. Qwen3-30B-A3B at M = 1, 4, 16 is 1.5, 5.3, 15.2 blocks per SM."""
    dsv3 = (256, 256, 7168, 8)  # TP8: M = 1 is 0.49 blocks per SM
    qwen = (128, 768, 2048, 8)
    for dtype in (None, "fp8_w8a8"):
        assert _tile(1, MoeShape(*dsv3, dtype)) == (16, 32, 128, 5)
    bf16, fp8 = MoeShape(*qwen), MoeShape(*qwen, "fp8_w8a8")
    assert [_tile(M, bf16) for M in (1, 4, 16)] == [(16, 64, 64, 5), (16, 64, 64, 3), (16, 64, 128, 3)]
    assert [_tile(M, fp8) for M in (1, 4, 16)] == [(16, 64, 128, 5), (16, 64, 128, 3), (16, 64, 128, 4)]


def test_long_reductions_take_256_byte_k_steps():
    """Mixtral-8x7B at TP2 (N 7168, K 4096): past a few blocks per SM both widths step 256 bytes
    of K at 4 stages (H200, M = 4: bf16 16x64x128 s4 0.999 of the best, 16x64x64 s3 0.972);
    a block-quantized layer still steps no further than its quant block."""
    mixtral = (8, 7168, 4096, 2)
    assert _tile(4, MoeShape(*mixtral)) == (16, 64, 128, 4)
    assert _tile(4, MoeShape(*mixtral, "fp8_w8a8")) == (16, 64, 256, 4)
    assert _tile(4, MoeShape(*mixtral, "fp8_w8a8", (128, 128)))[2] == 128


def test_decode_ignores_padding_of_the_short_reduction():
    """GLM-4.5 at TP8 (N 192): 8-bit 16x64x128 pads w2's reduction by a third and was still the
    best decode tile (H200, M = 2: 5 stages 1.00, v4's unpadded 16x32x64 0.82)."""
    glm = MoeShape(160, 192, 5120, 8, "fp8_w8a8")
    assert _tile(2, glm) == (16, 64, 128, 5)


def test_fewer_sms_reach_the_shallow_pipeline_sooner():
    """The bands count blocks per SM of the GPU the config is for: Mixtral-8x7B at M = 2 is 1.9
    blocks per SM on an RTX 4090 (128 SMs) and more than FEW_BLOCKS_PER_SM on an L4 (58)."""
    mixtral = MoeShape(8, 7168, 4096, 2)
    assert _blocks_per_sm(2 * 2, mixtral, find_gpu("RTX 4090")) <= FEW_BLOCKS_PER_SM
    assert _blocks_per_sm(2 * 2, mixtral, find_gpu("L4")) > FEW_BLOCKS_PER_SM
    assert _tile(2, mixtral) == (16, 64, 64, 5)
    assert _tile(2, mixtral, "L4") == (16, 64, 128, 4)
    assert _blocks_per_sm(8, MoeShape(256, 256, 7168, 8), find_gpu("RTX 4090")) <= ALONE_BLOCKS_PER_SM


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
