"""The fused-MoE sweep's plan side and report on the CPU (the timing side needs a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sglang_consumer_gpu.measure import moe_sweep as sweep
from sglang_consumer_gpu.measure.moe import config_key

REPO = Path(__file__).resolve().parents[1]


def test_search_space_pruning() -> None:
    space = sweep.search_space()
    assert len({config_key(c) for c in space}) == len(space)
    assert all(c["GROUP_SIZE_M"] == 1 for c in space)
    assert not [c for c in space if c["num_warps"] == 8 and c["BLOCK_SIZE_M"] * c["BLOCK_SIZE_N"] < 64 * 128]
    assert not [c for c in space if c["num_warps"] == 4 and c["BLOCK_SIZE_M"] * c["BLOCK_SIZE_N"] > 128 * 128]
    assert {c["num_stages"] for c in space} == {2, 3, 4, 5}


def test_deepest_keeps_the_two_deepest_per_tile_by_default() -> None:
    space = [c for c in sweep.search_space() if c["num_stages"] != 5 or c["BLOCK_SIZE_K"] != 256]
    kept = sweep.deepest(space)
    tiles: dict[tuple[int, ...], list[int]] = {}
    for c in kept:
        tiles.setdefault(
            (c["BLOCK_SIZE_M"], c["BLOCK_SIZE_N"], c["BLOCK_SIZE_K"], c["num_warps"]), []
        ).append(c["num_stages"])
    assert all(sorted(s) == ([3, 4] if t[2] == 256 else [4, 5]) for t, s in tiles.items())


def test_the_earlier_plan_space_is_what_the_rule_gives() -> None:
    """tests/fixtures/results/cpu_moe_bench_plan.json (proven with the same rule): every config is in today's space."""
    plan = json.loads((REPO / "tests" / "fixtures" / "results" / "cpu_moe_bench_plan.json").read_text())
    space = {config_key(c) for c in sweep.search_space()}
    for case in plan["cases"]:
        assert {config_key({k: c[k] for k in sweep.CONFIG_KEYS}) for c in case["space"]} <= space


def test_report_reproduces_the_earlier_summary() -> None:
    """The report of tests/fixtures/results/h100_moe_bench_v2_confirm.json gives docs/lab/moe.md's numbers (Qwen3-235B-A22B-TP4
    fp8: heuristic 0.975 of the best, min 0.948)."""
    res = json.loads((REPO / "tests" / "fixtures" / "results" / "h100_moe_bench_v2_confirm.json").read_text())
    rows = {(r["case"], r["dtype"]): r for r in sweep.summarize(res)}
    r = rows[("Qwen3-235B-A22B-TP4", "fp8_w8a8")]
    assert r["geo_heur_vs_best"] == pytest.approx(0.975, abs=5e-4)
    assert r["min_heur_vs_best"] == pytest.approx(0.948, abs=5e-4)
    assert "| Qwen3-235B-A22B-TP4 | fp8_w8a8 | 143 | 0.975 (0.948) |" in sweep.report_table(res)


@pytest.mark.parametrize(
    ("only", "name", "dtype", "want"),
    [
        (None, "Qwen3-30B-A3B", None, True),
        ("Qwen3-30B", "Qwen3-30B-A3B", "fp8_w8a8", True),
        ("Qwen3-30B|bf16", "Qwen3-30B-A3B", "fp8_w8a8", False),
        ("Qwen3-30B|fp8_w8a8,GLM", "GLM-4.5-Air-TP2", None, True),
        ("Mixtral", "Qwen3-30B-A3B", None, False),
    ],
)
def test_selected(only: str | None, name: str, dtype: str | None, want: bool) -> None:
    assert sweep.selected(name, only, dtype) is want


def test_space_candidates_drop_plan_annotations() -> None:
    case = {"space": [{**sweep.search_space()[0], "shared_sm89": 1, "estimate": 2}]}
    (cfg,) = sweep.space_candidates(0, case, {}).values()
    assert set(cfg) == set(sweep.CONFIG_KEYS)
