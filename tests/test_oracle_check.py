"""`sglang-consumer-gpu check`: PASS/FAIL with both numbers, exit codes, providers."""

from __future__ import annotations

import json

import pytest

from sglang_consumer_gpu.cli import main
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.oracle import checks
from sglang_consumer_gpu.oracle.kernels.moe import moe_gemm_resources

RTX_4090 = "NVIDIA GeForce RTX 4090"
SEED_TILE = dict(
    BLOCK_SIZE_M=128, BLOCK_SIZE_N=128, BLOCK_SIZE_K=128, GROUP_SIZE_M=16, num_warps=8, num_stages=4
)
SMALL_TILE = dict(
    BLOCK_SIZE_M=16, BLOCK_SIZE_N=32, BLOCK_SIZE_K=64, GROUP_SIZE_M=1, num_warps=4, num_stages=2
)
SHAPE = dict(E=8, N=256, K=512, topk=2, M=4, dtype=None, block_shape=None, patched=False)


def reference_items(spec, *, full):
    """A provider compiling, through SGLang's real launcher, the tile that
    crashed users (bf16 128x128x128, 8 warps, 4 stages) and a small one."""
    for name, tile in (("seed", SEED_TILE), ("small", SMALL_TILE)):
        res = moe_gemm_resources(spec, gemm="up", config=tile, **SHAPE)
        yield checks.CheckItem("moe-reference", res.kernel, name, res)
    yield checks.CheckItem(
        kernel="lazy",
        config="small-lazy",
        run=lambda: moe_gemm_resources(spec, gemm="down", config=SMALL_TILE, **SHAPE),
    )


@pytest.fixture
def reference_only(monkeypatch, tmp_path):
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(checks, "PROVIDERS", ["test_oracle_check:reference_items", "no_such_module_x:items"])
    monkeypatch.setattr(checks, "BASELINE_PROVIDERS", [])


def test_known_failing_config_fails_with_both_numbers(reference_only, capsys):
    rc = main(["check", "--gpu", RTX_4090, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    by = {i["config"]: i for i in out["items"]}
    seed = by["seed"]
    assert not seed["ok"] and seed["resources"]["limit"] == 101_376
    assert seed["resources"]["shared"] > 101_376
    assert by["small"]["ok"] and by["small-lazy"]["ok"]  # lazy items are run; area from the module
    assert by["small-lazy"]["area"] == "test_oracle_check"
    assert out["summary"]["failed"] == 1 and out["summary"]["checked"] == 3


def test_table_and_skipped_provider(reference_only, capsys):
    rc = main(["check", "--gpu", "4090"])
    cap = capsys.readouterr()
    assert rc == 1
    assert "no_such_module_x:items skipped" in cap.err
    seed_row = next(line for line in cap.out.splitlines() if " seed " in line)
    assert "101,376" in seed_row and seed_row.rstrip().endswith("FAIL")
    assert "3 configurations checked" in cap.out


def test_other_target_other_numbers_and_only_filter(reference_only, capsys):
    """Compiled for sm_90 the seed tile needs more still (and overflows an H100 too)."""
    rc = main(["check", "--gpu", "NVIDIA H100 80GB HBM3", "--json", "--only", "moe-reference"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert {i["area"] for i in out["items"]} == {"moe-reference"}
    seed = next(i for i in out["items"] if i["config"] == "seed")["resources"]
    assert seed["target"] == "sm_90" and seed["limit"] == 232_448 and seed["shared"] > seed["limit"]


def test_bad_gpu_name_is_exit_2(capsys):
    assert main(["check", "--gpu", "RTX 9999"]) == 2
    assert "unknown GPU" in capsys.readouterr().err


def test_moe_provider_uses_sglangs_choice(monkeypatch, tmp_path):
    """The built-in MoE provider compiles SGLang's own pick for each batch size."""
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        checks, "COMMON_SHAPES", (checks.NamedShape("tiny", checks.MoeShape(8, 256, 512, 2)),)
    )
    monkeypatch.setattr(checks, "GRID", (1, 64))
    monkeypatch.setattr(checks, "sglang_file_shapes", lambda spec: [])
    items = list(checks.moe_baseline_items(find_gpu(RTX_4090), full=False))
    assert len(items) == 4 and all(i.ok for i in items)
    # SGLang's default for M <= E is 16x32x64 and 64x64x32 above (fused_moe_triton_config.py)
    assert "M=1 up: 16x32x64" in items[0].config and "M=64 up: 64x64x32" in items[2].config


def test_sglang_ships_tuned_files_for_the_4090():
    shapes = checks.sglang_file_shapes(find_gpu(RTX_4090))
    assert {(n.shape.E, n.shape.N, n.shape.dtype) for n in shapes} == {
        (64, 640, "fp8_w8a8"),
        (8, 3584, "fp8_w8a8"),
    }


def test_moe_provider_skips_fp8_where_triton_has_no_fp8(monkeypatch, tmp_path):
    """On sm_86 Triton refuses e4m3 ('fp8e4nv not supported in this architecture'):
    there is no fp8 fused-MoE launch to check, so no FAIL is reported for it."""
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))
    fp8 = checks.NamedShape("tiny-fp8", checks.MoeShape(8, 256, 512, 2, "fp8_w8a8"))
    monkeypatch.setattr(checks, "COMMON_SHAPES", (fp8,))
    monkeypatch.setattr(checks, "GRID", (1,))
    monkeypatch.setattr(checks, "sglang_file_shapes", lambda spec: [])
    assert list(checks.moe_items(find_gpu("NVIDIA GeForce RTX 3090"), full=False)) == []
    items = list(checks.moe_items(find_gpu(RTX_4090), full=False))
    assert len(items) == 2 and all(i.ok for i in items)
