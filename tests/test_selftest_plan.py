"""The selftest plan: which cases for which GPU spec and SGLang version (no GPU needed)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sglang_consumer_gpu.families.attention import AttentionRun
from sglang_consumer_gpu.families.int8 import Int8Run
from sglang_consumer_gpu.families.moe import MoeRun
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe.lookup import clear_cache
from sglang_consumer_gpu.moe.smem import estimate_shared
from sglang_consumer_gpu.selftest import plan as P
from sglang_consumer_gpu.selftest.plan import build_plan
from tests.conftest import run_python_json

SGLANG = "0.5.23"
CONSUMER = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090", "NVIDIA L40S")


def capped_h200() -> object:
    """The live spec of an H200 under SGLANG_CONSUMER_GPU_EMULATE_SMEM=101376 (emulation's contract)."""
    return dataclasses.replace(
        find_gpu("NVIDIA H200"), smem_per_block_optin=101_376, source="live+emulated-smem"
    )


SPECS = {**{g: find_gpu(g) for g in CONSUMER}, "H200 capped": capped_h200(), "H200": find_gpu("NVIDIA H200")}


@pytest.fixture(scope="module")
def plans() -> dict[tuple[str, bool], P.Plan]:
    clear_cache()
    return {(name, quick): build_plan(spec, sglang=SGLANG, quick=quick) for name, spec in SPECS.items()
            for quick in (True, False)}  # fmt: skip


def moe(plan: P.Plan) -> list[P.Case]:
    return [c for c in plan.cases if c.area == "moe"]


@pytest.mark.parametrize("quick", [True, False])
def test_fp8_on_sm86_is_the_weight_only_familys(plans, quick):
    """SGLang's fp8 kernel cannot run on sm_86: no fused-MoE case (nor SKIP row) is fp8 there;
    the fp8 family's weight-only cases are (tests/test_fp8_moe.py checks them)."""
    plan = plans[("NVIDIA GeForce RTX 3090", quick)]
    assert not [c for c in moe(plan) if "fp8" in c.name]
    running = {c.run.case.shape.dtype for c in plan.runnable if isinstance(c.run, MoeRun)}
    assert running == {None, "int8_w8a8"}
    assert [c for c in plan.runnable if c.area == "fp8-moe"]


@pytest.mark.parametrize(
    "gpu", ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090", "NVIDIA L40S", "H200 capped"]
)
def test_every_dtype_the_gpu_supports(plans, gpu):
    full = plans[(gpu, False)]
    modes = {(c.run.case.shape.dtype, c.run.case.quant, c.run.case.act_dtype)
             for c in full.runnable if isinstance(c.run, MoeRun) and not c.run.guarded}  # fmt: skip
    assert {(None, "none", "bfloat16"), (None, "none", "float16"), ("fp8_w8a8", "per-tensor", "bfloat16"),
            ("fp8_w8a8", "per-channel", "bfloat16"), ("fp8_w8a8", "block", "bfloat16"),
            ("int8_w8a8", "per-channel", "bfloat16"), ("int8_w8a8", "block", "bfloat16")} <= modes  # fmt: skip
    quick = {c.name.split(" E=")[0] for c in moe(plans[(gpu, True)]) if c.run is not None}
    assert {"bf16", "fp16", "fp8 block", "fp8 per-tensor", "int8 per-channel"} <= quick


@pytest.mark.parametrize("name", list(SPECS))
def test_the_plugins_moe_configs_fit_the_gpu(plans, name):
    """Every config a (non-safety) case runs fits the spec by the analytic bound, and the
    safety case's does not: it exists to overflow."""
    spec = SPECS[name]
    for quick in (True, False):
        for c in plans[(name, quick)].runnable:
            if not isinstance(c.run, MoeRun):
                continue
            s = c.run.case.shape
            for cfg in (c.run.up, c.run.down or c.run.up):
                need = estimate_shared(cfg, s.dtype, s.block_shape, spec.capability)
                assert (need > spec.smem_per_block_optin) == c.run.guarded, (c.name, cfg, need)


def test_sources_per_gpu(plans):
    sources = {name: {c.source.split(" ")[0] for c in moe(plans[(name, False)]) if c.run} for name in SPECS}
    assert (
        "heuristic" in sources["NVIDIA GeForce RTX 4090"] and "bundled" in sources["NVIDIA GeForce RTX 4090"]
    )
    assert "bundled" in sources["NVIDIA L40S"]
    # the capped H200: SGLang's own H200 files where they fit 101,376 B, the heuristic elsewhere
    assert {"sglang", "heuristic"} <= sources["H200 capped"]
    assert sources["NVIDIA GeForce RTX 5090"] == {"heuristic"}


def test_quick_mode_keeps_one_case_per_source_and_area(plans):
    for name in SPECS:
        quick, full = plans[(name, True)], plans[(name, False)]
        assert {c.area for c in quick.cases} == {c.area for c in full.cases}
        assert {c.source.split(" ")[0] for c in quick.runnable} == {
            c.source.split(" ")[0] for c in full.runnable
        } or name == "H200 capped"  # quick: at most 2 of SGLang's ~80 H200 files
        assert len(quick.runnable) <= len(full.runnable)


def test_quick_compile_budget(plans):
    """--quick aims at under a minute on an RTX 4090-class machine: its cold-cache compile count
    at ~4 s per fused-MoE compile per core (DESIGN 3b) is ~20 s on 8 cores."""
    for name in CONSUMER:
        assert plans[(name, True)].kernel_compiles() <= 40, name
        assert plans[(name, True)].kernel_compiles() < plans[(name, False)].kernel_compiles()


def test_uncapped_h200_leaves_everything_but_int8_to_sglang(plans):
    plan = plans[("H200", False)]
    by_area = {a: [c for c in plan.cases if c.area == a] for a in ("moe", "attention", "int8", "safety")}
    for area in ("moe", "attention", "safety"):
        assert by_area[area] and all(c.skip for c in by_area[area]), area
    assert "232,448" in by_area["moe"][0].skip
    assert by_area["int8"] and all(c.run and c.run.route == "sgl-kernel" for c in by_area["int8"])
    assert len(plan.cases) < len(plans[("H200 capped", False)].cases)


def test_capped_h200_attention_replaces_the_mla_tile(plans):
    plan = plans[("H200 capped", True)]
    mla = next(c for c in plan.cases if c.area == "attention" and "Lq=576" in c.name)
    assert mla.run.sglang_tile == (32, 64, 8)  # SGLang's sm_90 tile: 106,496 B
    assert mla.run.tile != mla.run.sglang_tile and mla.source.startswith("plugin")
    gqa = next(c for c in plan.cases if c.area == "attention" and "Lq=128" in c.name)
    assert gqa.run.tile == gqa.run.sglang_tile == (128, 64, 8)


def test_int8_route_per_gpu(plans):
    for name, route in (("NVIDIA GeForce RTX 4090", "sgl-kernel"), ("NVIDIA GeForce RTX 5090", "triton")):
        runs = [c.run for c in plans[(name, True)].cases if c.area == "int8"]
        assert runs and {r.route for r in runs} == {route}
    triton = [c.run for c in plans[("NVIDIA GeForce RTX 5090", True)].cases if isinstance(c.run, Int8Run)]
    assert any(r.extreme for r in triton) and all(r.tile for r in triton if not r.extreme)


def test_safety_cases_overflow_the_gpu(plans):
    for name in ("NVIDIA GeForce RTX 4090", "H200 capped"):
        full = [c for c in plans[(name, False)].cases if c.area == "safety"]
        assert len(full) == 2
        moe_case = next(c for c in full if isinstance(c.run, MoeRun))
        assert moe_case.run.guarded and [dict(j.config)["num_stages"] for j in moe_case.jobs()] == [
            4,
            3,
            2,
            1,
        ]
    capped = [
        c for c in plans[("H200 capped", False)].cases if isinstance(c.run, AttentionRun) and c.run.guarded
    ]
    assert capped and capped[0].run.tile == (32, 64, 8)
    # on an RTX 4090 SGLang's sm_80/sm_90 MLA tile would overflow too (106,496 B): the extend safety case runs
    assert any(isinstance(c.run, AttentionRun) for c in plans[("NVIDIA GeForce RTX 4090", False)].cases
               if c.area == "safety")  # fmt: skip


def test_without_sglang_only_the_plugins_own_kernel_runs():
    spec = find_gpu("NVIDIA GeForce RTX 5090")
    for version, words in ((None, "not installed"), ("0.5.10", "older than 0.5.16"), ("0.5.99", "newer than")):
        plan = build_plan(spec, sglang=version, quick=True)
        assert {c.area for c in plan.runnable} == {"int8"}
        assert all(words in c.skip for c in plan.cases if c.area != "int8")


def test_full_mode_limit_per_source_is_reported():
    plan = build_plan(capped_h200(), sglang=SGLANG, quick=False, max_per_source=2)
    assert len([c for c in plan.runnable if c.name.startswith("sglang file")]) == 2
    assert plan.left_out.get("sglang", 0) > 10 and "left out" in plan.notes[0]


def test_user_tuned_file_is_tested(tmp_path, monkeypatch):
    """A file in the user directory wins the lookup: the grid's bf16 cases run its entries
    (M=1 -> the "1" entry, M=1024 -> the "1024" entry) and say where they come from."""
    entry = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1, "num_warps": 4,
             "num_stages": 3}  # fmt: skip
    big = dict(entry, BLOCK_SIZE_M=64, BLOCK_SIZE_N=128)
    name = "E=128,N=768,device_name=NVIDIA_GeForce_RTX_4090.json"
    (tmp_path / name).write_text(json.dumps({"1": entry, "1024": big}))
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR", str(tmp_path))
    clear_cache()
    try:
        plan = build_plan(find_gpu("NVIDIA GeForce RTX 4090"), sglang=SGLANG, quick=True)
    finally:
        monkeypatch.delenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR")
        clear_cache()
    bf16 = [c for c in plan.runnable if c.name.startswith("bf16 ")]
    assert bf16 and all(c.source == f"user file {name}" for c in bf16)
    assert {c.run.up["BLOCK_SIZE_N"] for c in bf16} == {64, 128}


def test_case_names_are_unique(plans):
    for plan in plans.values():
        names = [c.name for c in plan.cases]
        assert len(names) == len(set(names))


def test_plan_matches_sglangs_patched_lookup():
    """What the plan will run is what SGLang's own try_get_optimal_moe_config returns with the
    plugin's patches (the runner checks this again on the GPU; a mismatch FAILs there)."""
    out = run_python_json("""
        import dataclasses, json
        from sglang_consumer_gpu.activation import activate
        from sglang_consumer_gpu.hardware import find_gpu
        from sglang_consumer_gpu.families.moe import sglang_choices
        from sglang_consumer_gpu.families.moe import MoeRun
        from sglang_consumer_gpu.selftest.plan import build_plan
        from sglang_consumer_gpu.measure.moe import launch_config
        activate("test")
        bad, n = [], 0
        for spec in (find_gpu("NVIDIA GeForce RTX 4090"), find_gpu("NVIDIA L40S"),
                     dataclasses.replace(find_gpu("NVIDIA H200"), smem_per_block_optin=101376)):
            plan = build_plan(spec, sglang="0.5.23", quick=False, max_per_source=3)
            by_shape = {}
            for c in plan.runnable:
                if isinstance(c.run, MoeRun) and not c.run.guarded:
                    by_shape.setdefault(c.run.case.shape, []).append(c)
            for shape, cases in by_shape.items():
                got = sglang_choices(spec, shape, sorted({c.run.case.M for c in cases}), patched=True)
                for c in cases:
                    up, down = got[c.run.case.M]
                    n += 1
                    if (launch_config(up), launch_config(down) if down else None) != (c.run.up, c.run.down):
                        bad.append([spec.name, c.name, up, down, c.run.up, c.run.down])
        print(json.dumps({"n": n, "bad": bad}))
    """)
    assert out["n"] > 50 and out["bad"] == []


def test_an_area_that_cannot_be_planned_is_a_fail_row(monkeypatch):
    """An SGLang whose helpers answer unexpectedly must not take the other areas down, nor pass."""
    from sglang_consumer_gpu.families import attention
    from sglang_consumer_gpu.families.cases import FAIL
    from sglang_consumer_gpu.selftest.run import Runner

    def broken(*a, **k):
        raise TypeError("helper changed")

    monkeypatch.setattr(attention, "extend_tiles_for", broken)
    plan = build_plan(find_gpu("NVIDIA GeForce RTX 4090"), sglang=SGLANG, quick=True)
    (row,) = [c for c in plan.cases if c.area == "attention"]
    assert row.error and "TypeError: helper changed" in row.error and row in plan.runnable
    assert {c.area for c in plan.runnable} == {"moe", "attention", "int8", "safety"}
    result = Runner(plan, device="cpu").execute(row)
    assert result.status == FAIL and "helper changed" in result.reason
