"""The calibration plan (which real-card files, which picks) and its arithmetic, on the CPU."""

from __future__ import annotations

import json

import pytest

from sglang_consumer_gpu.bench import calibration
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.moe import config_key, launch_config
from sglang_consumer_gpu.moe.sources import BUNDLED_DIR

MANIFEST = json.loads((BUNDLED_DIR / "manifest.json").read_text())


@pytest.mark.parametrize("f", calibration.FILES, ids=lambda f: f.file)
def test_every_file_is_a_bundled_sm89_cards_and_parses(f) -> None:
    entry = MANIFEST["files"][f.file]
    assert entry["arch"] == "sm_89"
    shape = f.shape()
    assert shape.dtype == entry["dtype"]
    assert shape.per_channel_quant == ("per_channel_quant=True" in f.file or f.per_channel_quant)
    assert calibration.file_picks(f)  # validated as the lookup validates


def test_the_plan_takes_the_files_entry_by_sglangs_nearest_rule() -> None:
    spec = find_gpu("RTX 4090")
    mixtral = next(f for f in calibration.FILES if "L40S.json" in f.file)
    doc = calibration.plan(spec, [mixtral], grid=(1, 200, 5000))
    (case,) = doc["cases"]
    picks = calibration.file_picks(mixtral)
    for p in case["points"]:
        m = min(picks, key=lambda k: abs(k - p["M"]))
        assert p["pick"] == launch_config(picks[m])
        assert {"default", "heuristic", "pick"} <= set(p)
    assert (case["E"], case["N"], case["K"], case["topk"]) == (8, 3584, 4096, 2)
    assert len(case["space"]) > 50 and all(c["GROUP_SIZE_M"] == 1 for c in case["space"])


def _results(mode_us: dict[str, dict[str, float]], pick: str, best_us: float, pick_us: float) -> dict:
    cfg = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 3}
    best = {**cfg, "BLOCK_SIZE_N": 32}
    return {"device": "H200", "cases": [{"name": "x", "dtype": None, "points": [{
        "M": 1, "space_us": mode_us, "pick": {"config": cfg, "us": pick_us},
        "heuristic": {"config": best, "us": best_us}, "default": {"config": cfg, "us": 2 * best_us},
        "best": {"config": best, "us": best_us}, "finalists_spread": 0.01}]}]}  # fmt: skip


def test_summary_ratio_and_rank() -> None:
    cfg = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 3}
    k = config_key(cfg)
    res = _results({"a": 10.0, "b": 11.0, k: 12.0, "c": 13.0}, k, best_us=10.0, pick_us=12.5)
    (row,) = calibration.summarize(res)
    assert row["rank"] == 3 and row["timed"] == 4
    assert row["pick_vs_best"] == pytest.approx(0.8)
    assert (row["heuristic_vs_best"], row["default_vs_best"]) == (1.0, 0.5)
    cmp = calibration.compare({"arch": res, "limit": _results({k: 9.0, "a": 10.0}, k, 9.0, 9.0)})
    assert cmp["modes"]["arch"]["geomean"] == pytest.approx(0.8)
    assert cmp["modes"]["limit"]["files"]["x"]["ranks"] == [1]
    table = calibration.table(cmp)
    assert "**0.800**" in table and "**1.000**" in table
    # the pick ranked 3rd of 4 under one mode, 1st of 2 under the other
    assert (cmp["modes"]["arch"]["median_rank_fraction"], cmp["modes"]["arch"]["top5"]) == (0.75, 1)
    assert cmp["modes"]["limit"]["median_rank_fraction"] == 0.5
    assert "| SGLang's default / best, geomean (min) | 0.500 (0.500) | 0.500 (0.500) |" in table
