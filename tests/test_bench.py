"""``bench`` without a GPU: its points per GPU spec, report writers (JSON, table, PNG), partial
reports, bad input. Timing needs the GPU; here a stand-in fills the timings of the run loop."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sglang_consumer_gpu.bench import report as BR
from sglang_consumer_gpu.bench import run as BRun
from sglang_consumer_gpu.bench.points import list_points
from sglang_consumer_gpu.families.moe import MoePoint
from sglang_consumer_gpu.hardware import find_gpu, override_spec
from sglang_consumer_gpu.models import load_model
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[1]
QWEN = ROOT / "tests/fixtures/models/Qwen3-30B-A3B"
MS = [1, 64, 4096]


def capped_h200() -> Any:
    return dataclasses.replace(
        find_gpu("NVIDIA H200"), smem_per_block_optin=101_376, source="live+emulated-smem"
    )


def llama(tmp_path: Path) -> Path:
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
           "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
           "num_hidden_layers": 4, "vocab_size": 128256, "torch_dtype": "bfloat16"}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return tmp_path


def plan_for(spec: Any, model: Path = QWEN, ms: list[int] | None = MS, *, tp: int = 1) -> Any:
    with override_spec(spec):
        return list_points(spec, load_model(str(model)), tp=tp, ep=1, batch_sizes=ms)


@pytest.fixture(scope="module")
def capped() -> Any:
    return plan_for(capped_h200())


def test_capped_h200_sglang_alone_would_fail_at_large_batches(capped):
    """SGLang's own H200 file hands M=4096 a 4-stage tile (196,608 B on sm_90), which a
    101,376 B budget refuses; the plugin's heuristic fits."""
    by_m = {p.case.M: p for p in capped.part("moe").points}
    big = by_m[4096]
    assert big.sglang_fit.fits is False and big.sglang_fit.shared > 101_376
    assert big.plugin_fit.fits is not False and big.plugin.source == "heuristic"
    doc = BRun.document(capped, {}, [])
    row = next(r for r in doc["moe"] if r["M"] == 4096)
    assert row["sglang"]["status"].startswith("would fail: OutOfResources, needs ")
    assert f"{big.sglang_fit.shared:,} B > 101,376 B" in row["sglang"]["status"]
    assert "SGLang alone would fail: OutOfResources" in BR.text(doc)
    assert [r["sglang"]["status"] for r in doc["attention"]] == ["same tile", "same tile"]


def test_consumer_gpu_points():
    plan = plan_for(find_gpu("NVIDIA GeForce RTX 4090"))
    moe, attention = plan.part("moe").points, plan.part("attention").points
    assert [p.case.M for p in moe] == MS
    assert all(p.plugin.source == "heuristic" and not p.same and p.sglang_fit.fits for p in moe)
    assert {p.workload for p in attention} == {"prefill-heavy", "decode-heavy"}
    assert attention[0].case.q_heads == 32 and attention[0].case.kv_heads == 4


def test_uncapped_h200_plugin_is_sglang():
    plan = plan_for(find_gpu("NVIDIA H200"), ms=[1, 4096])
    assert all(p.same for part in plan.parts for p in part.points)
    assert any("does not change fused-MoE configs" in n for n in plan.notes)
    assert BRun._jobs(plan, BRun.document(plan, {}, [])) == []  # nothing to compile or time


def test_not_moe_is_attention_only(tmp_path):
    plan = plan_for(find_gpu("NVIDIA GeForce RTX 4090"), llama(tmp_path))
    assert plan.part("moe").points == [] and plan.part("moe").model == {"moe_layer": None}
    assert any("not a MoE model" in n and "attention only" in n for n in plan.notes)
    assert len(plan.part("attention").points) == 2


def _fake_moe_timing(fail_at: int | None = None) -> Any:
    calls = []

    def time_moe(p: Any, row: dict[str, Any], timer: Any) -> None:  # MoePoint.time
        calls.append(p.case.M)
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        row["plugin"]["us"] = 10.0
        row["plugin"]["check"] = {"ok": True, "error": 1e-3, "bound": 5e-3}
        if row["sglang"]["status"] == "pending":
            row["sglang"].update(us=12.5, status="timed")
            row["speedup"] = 1.25

    return time_moe


class _NoTimer:
    warmed_s, rounds = 0.0, 5


def test_run_writes_after_every_point_and_ctrl_c_leaves_a_valid_report(capped, tmp_path, monkeypatch):
    import sglang_consumer_gpu.measure.compile as mc

    monkeypatch.setattr(mc, "precompile", lambda jobs, workers=None, **kw: {j.key: "" for j in jobs})
    monkeypatch.setattr(MoePoint, "time", _fake_moe_timing(fail_at=2))
    doc = BRun.document(capped, {}, [])
    path = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        BRun.run_bench(capped, doc, path, timer=_NoTimer())
    disk = json.loads(path.read_text())
    assert disk["schema"] == BRun.SCHEMA and disk["interrupted"] and not disk["complete"]
    # rows whose config is SGLang's own are not timed (at M = 1 SGLang's H200 file and the
    # heuristic both say 16x64x64 at 5 stages)
    timed = [r for r in disk["moe"] if r["sglang"]["status"] != "same config"]
    assert timed[0]["plugin"]["us"] == 10.0 and timed[1]["plugin"]["us"] is None
    assert disk["summary"]["moe"]["timed"] == 1
    assert disk["compile"]["jobs"] > 0


def test_complete_run_summary_and_png(capped, tmp_path, monkeypatch):
    import sglang_consumer_gpu.measure.compile as mc

    monkeypatch.setattr(mc, "precompile", lambda jobs, workers=None, **kw: {j.key: "" for j in jobs})
    monkeypatch.setattr(MoePoint, "time", _fake_moe_timing())
    doc = BRun.run_bench(capped, BRun.document(capped, {}, []), tmp_path / "b.json", timer=_NoTimer())
    assert doc["complete"] and not doc["interrupted"]
    s = doc["summary"]["moe"]
    assert (
        s["points"] == 3 and s["timed"] == 1 and s["same"] == 1 and s["sglang_would_fail"] == 1
        and s["speedup_geomean"] == 1.25
    )
    png = tmp_path / "b.png"
    BR.plot(doc, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(capped, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(BR.PlotUnavailable, match=r"pip install 'sglang-consumer-gpu\[bench\]'"):
        BR.plot(BRun.document(capped, {}, []), tmp_path / "x.png")


# ------------------------------------------------------------------------------ command line


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python(f"import sys; from sglang_consumer_gpu.cli import main; sys.exit(main({list(args)!r}))")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("bench",), "give --model"),
        (("bench", "--model", "/no/such/model"), "no such directory"),
        (("bench", "--model", str(QWEN), "--batch-sizes", "1,x"), "--batch-sizes"),
        (("bench", "--model", str(QWEN), "--batch-sizes", "0,4"), "positive integers"),
        (("bench", "--model", str(QWEN), "--tp", "5"), "not divisible"),
        (("bench", "--model", str(QWEN), "--tp", "2", "--ep", "3"), "must divide"),
    ],
)
def test_bad_input_is_one_line(args, words):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert (
        len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr and "Traceback" not in proc.stderr
    )


def test_no_gpu_with_a_good_model_exits_4():
    proc = cli("bench", "--model", str(QWEN))
    assert proc.returncode == 4
    assert len(proc.stderr.strip().splitlines()) == 1 and "no NVIDIA GPU visible" in proc.stderr


def test_replot(capped, tmp_path):
    doc = BRun.document(capped, {}, [])
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    proc = cli("bench", "--plot", str(path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "old.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "junk.json").write_text("{}")
    proc = cli("bench", "--plot", str(tmp_path / "junk.json"))
    assert proc.returncode == 2 and "not a readable bench JSON" in proc.stderr


def test_sglangs_own_choice_does_not_leak_from_one_virtual_gpu_to_the_next():
    """SGLang caches get_moe_configs (an lru_cache the plugin's patch covers): asking for an
    H200 first must not hand an RTX 4090 the H200's file (families.on_gpu clears it after the revert)."""
    from sglang_consumer_gpu.families.moe import sglang_choices
    from sglang_consumer_gpu.moe.shape import MoeShape

    shape, rtx = MoeShape(128, 768, 2048, 8), find_gpu("NVIDIA GeForce RTX 4090")
    alone = sglang_choices(rtx, shape, [4096])
    h200 = sglang_choices(capped_h200(), shape, [4096])
    assert h200 != alone  # SGLang has an H200 file for this layer, none for the 4090
    assert sglang_choices(rtx, shape, [4096]) == alone


# ------------------------------------------------------------------------------ planned points

#: (GPU, capped shared memory or None, model fixture, tp, batch sizes): consumer cards, a capped and an
#: uncapped data-centre card, block FP8, MLA under TP, and experts the Triton fused MoE does not run.
PLANNED = [
    ("NVIDIA GeForce RTX 4090", None, "Qwen3-30B-A3B", 1, [1, 64, 4096]),
    ("NVIDIA GeForce RTX 4090", None, "Qwen3-30B-A3B-FP8", 1, [1, 256]),
    ("NVIDIA L40S", None, "DeepSeek-V3", 8, [1, 512]),
    ("NVIDIA H200", 101_376, "Qwen3-30B-A3B", 1, [1, 4096]),
    ("NVIDIA H100 80GB HBM3", None, "Qwen3-30B-A3B", 1, [1, 4096]),
    ("NVIDIA GeForce RTX 3090", None, "gpt-oss-20b", 1, [16]),
]
PLANNED_FIXTURE = ROOT / "tests/fixtures/bench_points.json"


def planned_documents() -> dict[str, Any]:
    """``bench``'s document before timing for each of :data:`PLANNED` (model paths relative to the repository)."""
    docs = {}
    for gpu, smem, model, tp, ms in PLANNED:
        spec = find_gpu(gpu)
        if smem:
            spec = dataclasses.replace(spec, smem_per_block_optin=smem, source="live+emulated-smem")
        doc = BRun.document(plan_for(spec, QWEN.parent / model, ms, tp=tp), {}, [])
        doc["model"]["config_path"] = str(Path(doc["model"]["config_path"]).relative_to(ROOT))
        key = f"{gpu}{f' capped at {smem} B' if smem else ''}|{model}|tp{tp}"
        docs[key] = json.loads(json.dumps(doc, default=str))
    return docs


def test_planned_points_are_the_recorded_ones():
    """The points, choices, fits and notes ``bench`` plans are those recorded in
    ``tests/fixtures/bench_points.json`` (the document before timing, key for key)."""
    assert planned_documents() == json.loads(PLANNED_FIXTURE.read_text())


def test_without_batch_sizes_the_moe_runs_at_the_default_launchs_sizes():
    """No ``--batch-sizes``: the sizes SGLang's default launch runs the fused MoE at (the MoE
    family's answer for that launch, the lookup grid up to the 4,096-token prefill chunk)."""
    from sglang_consumer_gpu.families.moe import batch_sizes
    from sglang_consumer_gpu.models.launch import Launch

    plan = plan_for(find_gpu("NVIDIA H100 80GB HBM3"), ms=None)
    ms = [p.case.M for p in plan.part("moe").points]
    assert ms == batch_sizes(Launch(argv=(), tp=1, ep=1))
    assert ms == [2**i for i in range(13)]  # 1 .. 4096
