"""The safety net's per-process state files and what `doctor` reads from them."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import run_python

from sglang_consumer_gpu.safety import state


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(state.TREE_ENV, raising=False)
    monkeypatch.setattr(state, "_records", {})
    monkeypatch.setattr(state, "_pruned", [])
    return tmp_path


def _iv(**changes: object) -> state.Intervention:
    base = {
        "kernel": "fused_moe_kernel",
        "module": "sglang.kernels.ops.moe.fused_moe_triton_kernels",
        "outcome": state.FITTED,
        "before": {"num_stages": 4, "num_warps": 8, "BLOCK_SIZE_K": 128},
        "after": {"num_stages": 1},
        "required": 262_144,
        "fitted": 65_536,
        "limit": 101_376,
        "message": "m",
    }
    return state.Intervention(**{**base, **changes})  # type: ignore[arg-type]


def test_record_writes_this_processs_file_and_merges_equal_decisions(cache):
    state.record(_iv())
    state.record(_iv())
    tree = os.environ[state.TREE_ENV]
    doc = json.loads((cache / "safety" / tree / f"{os.getpid()}.json").read_text())
    assert doc["pid"] == os.getpid()
    [iv] = doc["interventions"]
    assert iv["specializations"] == 2
    assert not list((cache / "safety" / tree).glob(".*.tmp"))


def test_report_covers_the_process_tree_including_exited_children(cache):
    tree = state.tree_id()
    code = """
        from sglang_consumer_gpu.safety import state
        state.record(state.Intervention(kernel="_fwd_kernel", module="sglang.kernels.ops.attention.extend_attention",
            outcome=state.FAILED, before={"num_stages": 1, "BLOCK_N": 64}, after={}, required=106496, fitted=None,
            limit=101376, message="x"))
    """
    proc = run_python(code, env={state.TREE_ENV: tree, "SGLANG_CONSUMER_GPU_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr
    state.record(_iv())
    rep = state.report()
    assert rep["tree"] == tree
    assert sorted((p["pid"] == os.getpid(), p["alive"]) for p in rep["processes"]) == [
        (False, False),
        (True, True),
    ]
    by_kernel = {iv["kernel"]: iv for iv in rep["interventions"]}
    assert by_kernel["_fwd_kernel"]["alive"] is False and by_kernel["_fwd_kernel"]["outcome"] == "failed"
    assert by_kernel["fused_moe_kernel"]["pid"] == os.getpid()
    text = state.lines(rep)
    assert text[0].startswith(
        f"safety net: 2 intervention(s) in process tree {tree} (2 process(es), 1 running)"
    )
    assert any(
        "fused_moe_kernel: needed 262144 B > 101376 B; ran with num_stages=1 (was 4), 65536 B" in t
        for t in text
    )
    assert any("_fwd_kernel: needed 106496 B > 101376 B; nothing fitted" in t and "exited" in t for t in text)


def test_doctor_in_another_shell_sees_the_latest_tree(cache, monkeypatch):
    for tree, age in (("old-tree", 3600), ("new-tree", 0)):
        directory = cache / "safety" / tree
        directory.mkdir(parents=True)
        path = directory / "4242.json"
        path.write_text(json.dumps({"pid": 4242, "interventions": [{**_iv().__dict__}]}))
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    assert state.report()["tree"] == "new-tree"
    assert state.report("old-tree")["tree"] == "old-tree"
    assert [iv["kernel"] for iv in state.interventions()] == ["fused_moe_kernel"]


def test_nothing_recorded(cache):
    assert state.report()["tree"] is None
    assert state.lines() == ["safety net: no interventions recorded"]


def test_old_trees_are_pruned(cache):
    old = cache / "safety" / "stale"
    old.mkdir(parents=True)
    path = old / "1.json"
    path.write_text("{}")
    stamp = time.time() - (state.KEEP_DAYS + 1) * 86400
    os.utime(path, (stamp, stamp))
    state.record(_iv())
    assert not old.exists()


def test_unwritable_cache_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(blocker))  # a file where a directory should be
    monkeypatch.delenv(state.TREE_ENV, raising=False)
    monkeypatch.setattr(state, "_records", {})
    state.record(_iv())
    assert len(state.local()) == 1
