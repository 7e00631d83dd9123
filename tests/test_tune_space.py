"""The tuner's space: pruned by the bound, neighbours inside it, GROUP_SIZE_M only where it can
matter, and the kernel specializations SGLang's routing buffers give each batch size."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.moe import parse_config_key
from sglang_consumer_gpu.measure.moe_sweep import deepest, search_space
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.smem import fits
from sglang_consumer_gpu.tune.space import SGLANG_BATCH_SIZES, Space, group_variants, key_of, specialization
from sglang_consumer_gpu.tune.state import write_atomic

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
QWEN30 = MoeShape(128, 768, 2048, 8)


@pytest.mark.parametrize(
    "shape",
    [QWEN30, MoeShape(128, 768, 2048, 8, "fp8_w8a8"), MoeShape(256, 256, 7168, 8, "fp8_w8a8", (128, 128))],
)
def test_nothing_the_bound_rejects_is_in_the_space(shape: MoeShape) -> None:
    space = Space.for_shape(RTX_4090, shape)
    every = {key_of(c) for c in search_space()}
    assert space.size == len(every) and set(space.keys) <= every
    assert all(fits(parse_config_key(k), shape.dtype, RTX_4090, shape.block_shape) for k in space.keys)
    admitted = [c for c in search_space() if fits(c, shape.dtype, RTX_4090, shape.block_shape)]
    if shape.block_shape:  # one scale per K step: BLOCK_SIZE_K divides the quant block's K
        assert all(128 % parse_config_key(k)["BLOCK_SIZE_K"] == 0 for k in space.keys)
    else:
        assert set(space.keys) == {key_of(c) for c in deepest(admitted)}
    assert len(Space.for_shape(RTX_4090, QWEN30)) == 109  # the benchmark rounds' 16-bit space


def test_neighbours_are_one_step_away_and_inside_the_space() -> None:
    space = Space.for_shape(RTX_4090, QWEN30)
    for key in ("16x32x128-g1-w4-s5", "16x32x64-g1-w4-s3", "128x256x64-g16-w8-s3"):
        here = parse_config_key(key)
        near = space.neighbours(key)
        assert near and key not in near and all(k in space for k in near)
        for k in near:
            c = parse_config_key(k)
            steps = [abs(math.log2(c[a] / here[a])) for a in ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K")]
            assert sum(1 for s in steps if s) <= 1 and max(steps) <= 1, (key, k)


def test_group_size_only_where_an_expert_has_several_m_blocks() -> None:
    assert group_variants(QWEN30, 1, "16x32x128-g1-w4-s5") == []  # one token per active expert
    assert group_variants(QWEN30, 1024, "128x128x64-g1-w8-s3") == []  # 64 tokens per expert < 2 x 128
    got = group_variants(QWEN30, 4096, "64x128x64-g1-w4-s4")  # 256 tokens per expert
    assert got == ["64x128x64-g16-w4-s4", "64x128x64-g32-w4-s4", "64x128x64-g64-w4-s4"]
    # Mixtral (8 experts, top-2) at 4096 tokens: 1024 tokens an expert, 16-row tiles: M-blocks
    # outnumber every GROUP_SIZE_M, all three differ
    assert len(group_variants(MoeShape(8, 7168, 4096, 2), 4096, "16x64x128-g1-w4-s4")) == 3


def test_two_specializations_for_qwen3_30b_a3b() -> None:
    """SGLang's routing buffer and the routed-token count are divisible by 16 at every even M of
    SGLang's grid, not at M = 1: two kernels per config cover all 18 batch sizes."""
    for bm in (16, 32, 64, 128, 256):
        classes = {M: specialization(QWEN30, M, bm) for M in SGLANG_BATCH_SIZES}
        assert len({c for M, c in classes.items() if M > 1}) == 1 and classes[1] != classes[2]


def test_atomic_write_keeps_the_old_file_when_it_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.json"
    write_atomic(path, "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]
