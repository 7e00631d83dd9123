"""The file names SGLang asks for and the variants whose tiles serve them (issue 23, part 3), on real
files: the bundled ones, SGLang 0.5.23's own, and files written here."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import GOOD

from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe import lookup
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import (
    FP8_SCALES,
    FP8_TO_BLOCK,
    INT8_CHANNEL,
    ConfigKey,
    config_file_name,
    name_variants,
    parse_file_name,
    served_by,
)

L40S = find_gpu("NVIDIA L40S")
RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
#: DeepSeek-R1-Channel-INT8 at TP32 (the seed's 32 L40S): SGLang's w8a8_int8 asks with per_channel_quant=True.
R1_INT8 = MoeShape(256, 64, 7168, 8, "int8_w8a8", per_channel_quant=True)
BUNDLED_R1 = "E=256,N=64,device_name=NVIDIA_L40S,dtype=int8_w8a8.json"


#: Every test starts with an empty tuned-config directory of the user's and no SGLANG_MOE_CONFIG_DIR.
pytestmark = pytest.mark.usefixtures("user_dir")


def test_the_seeds_l40s_file_serves_the_name_sglang_asks_for(caplog) -> None:
    asked = "E=256,N=64,device_name=NVIDIA_L40S,dtype=int8_w8a8,per_channel_quant=True.json"
    assert moe_family.file_names(L40S, R1_INT8)[0] == asked
    c = lookup.choose(1, R1_INT8, L40S)
    assert c.source == "bundled" and c.path.endswith(BUNDLED_R1)
    assert c.asked_for == asked and c.because == INT8_CHANNEL
    assert c.config == {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 64,
                        "num_warps": 4, "num_stages": 3}  # fmt: skip
    note = moe_family.variant_note(L40S, R1_INT8)
    assert note.startswith(f"asked for {asked}, using bundled file {BUNDLED_R1} because int8 without block")


def test_sglang_itself_gets_the_file_through_the_patch() -> None:
    """SGLang's own try_get_optimal_moe_config, patched, on a virtual L40S: the tuned tile, not a default."""
    up, _down = moe_family.sglang_choice(L40S, R1_INT8, 1, patched=True)
    alone, _ = moe_family.sglang_choice(L40S, R1_INT8, 1, patched=False)
    assert up["BLOCK_SIZE_N"] == 128 and up["GROUP_SIZE_M"] == 64
    assert alone != up  # SGLang alone never finds the file (it asks with the flag)


def test_the_exact_name_wins_over_a_variant(user_dir) -> None:
    name = config_file_name(ConfigKey(256, 64, "int8_w8a8", per_channel_quant=True), L40S.name)
    (user_dir / name).write_text(json.dumps({"1": GOOD}))
    c = lookup.choose(1, R1_INT8, L40S)
    assert c.source == "user" and c.asked_for is None and c.because is None


def test_fp8_per_channel_and_per_tensor_share() -> None:
    shape = MoeShape(8, 3584, 4096, 2, "fp8_w8a8", per_channel_quant=True)
    c = lookup.choose(1, shape, RTX_4090)
    assert c.source == "bundled" and c.because == FP8_SCALES
    assert c.path.endswith("E=8,N=3584,device_name=NVIDIA_GeForce_RTX_4090,dtype=fp8_w8a8.json")


def test_a_block_key_takes_a_per_tensor_file_only_where_its_tiles_fit_the_block(user_dir, caplog) -> None:
    block = MoeShape(64, 640, 3584, 8, "fp8_w8a8", block_shape=(128, 128))
    # the bundled per-tensor RTX 4090 file has BLOCK_SIZE_K=256 entries: no variant for a [128, 128] block,
    # and no warning about a file that is fine for its own name
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        assert lookup.choose(16, block, RTX_4090).source == "heuristic"
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]
    tensor = config_file_name(ConfigKey(64, 640, "fp8_w8a8"), RTX_4090.name)
    lookup.clear_cache()
    (user_dir / tensor).write_text(json.dumps({"1": GOOD}))  # BLOCK_SIZE_K 128 divides the block
    c = lookup.choose(16, block, RTX_4090)
    assert c.source == "user" and c.because == FP8_TO_BLOCK


def test_fp8_and_int8_never_share(user_dir) -> None:
    (user_dir / config_file_name(ConfigKey(256, 64, "fp8_w8a8"), L40S.name)).write_text(json.dumps({"1": GOOD}))
    assert all(v.key.dtype == "int8_w8a8" for v in name_variants(ConfigKey(256, 64, "int8_w8a8", per_channel_quant=True)))
    assert all(v.key.dtype == "fp8_w8a8" for v in name_variants(ConfigKey(256, 64, "fp8_w8a8")))
    assert name_variants(ConfigKey(256, 64, None)) == [] and name_variants(ConfigKey(256, 64, "int4_w4a16")) == []


@pytest.mark.parametrize(
    "key",
    [ConfigKey(256, 64, "int8_w8a8"), ConfigKey(8, 3584, "fp8_w8a8"), ConfigKey(256, 512, "fp8_w8a8", 128, 128),
     ConfigKey(128, 768, "fp8_w8a8", per_channel_quant=True, down_moe=True)],
)
def test_served_by_inverts_name_variants_and_names_round_trip(key) -> None:
    for asked in served_by(key):
        assert key in [v.key for v in name_variants(asked)]
    assert parse_file_name(config_file_name(key, L40S.name)) == (key, L40S.config_device_name)


def test_doctor_names_the_bundled_files_used_under_another_name() -> None:
    lines = moe_family.variant_files(L40S)
    assert any(BUNDLED_R1 in line and "per_channel_quant=True" in line for line in lines)
    assert moe_family.variant_files(find_gpu("RTX 3090")) == []
