"""`sglang-consumer-gpu check` on the oracle: PASS/FAIL with both numbers, SGLang's own MoE choice, SKIP rows."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from sglang_consumer_gpu.checks import registry
from sglang_consumer_gpu.cli import main
from sglang_consumer_gpu.families import moe
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.validate import tile_label
from sglang_consumer_gpu.oracle.item import CheckItem, finish
from sglang_consumer_gpu.oracle.kernels.moe import moe_gemm_resources

RTX_4090 = "NVIDIA GeForce RTX 4090"
SEED_TILE = dict(
    BLOCK_SIZE_M=128, BLOCK_SIZE_N=128, BLOCK_SIZE_K=128, GROUP_SIZE_M=16, num_warps=8, num_stages=4
)
SMALL_TILE = dict(
    BLOCK_SIZE_M=16, BLOCK_SIZE_N=32, BLOCK_SIZE_K=64, GROUP_SIZE_M=1, num_warps=4, num_stages=2
)
SHAPE = dict(E=8, N=256, K=512, topk=2, M=4, dtype=None, block_shape=None)


@dataclass(frozen=True)
class ReferenceProvider:
    """Compiles, through SGLang's real launcher, the tile that crashed users
    (bf16 128x128x128, 8 warps, 4 stages) and a small one (eagerly and lazily)."""

    area: str = "moe-reference"
    baseline: bool = False

    def items(self, spec, *, full):
        for name, tile in (("seed", SEED_TILE), ("small", SMALL_TILE)):
            res = moe_gemm_resources(spec, gemm="up", config=tile, **SHAPE)
            yield CheckItem(kernel=res.kernel, config=name, resources=res)
        yield CheckItem(
            kernel="lazy",
            config="small-lazy",
            run=lambda: moe_gemm_resources(spec, gemm="down", config=SMALL_TILE, **SHAPE),
        )


@pytest.fixture
def reference_only(monkeypatch, tmp_path):
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "PROVIDERS", (ReferenceProvider(),))
    monkeypatch.setattr(registry, "BASELINE_PROVIDERS", ())


def test_known_failing_config_fails_with_both_numbers(reference_only, capsys):
    rc = main(["check", "--gpu", RTX_4090, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    by = {i["config"]: i for i in out["items"]}
    seed = by["seed"]
    assert not seed["ok"] and seed["resources"]["limit"] == 101_376
    assert seed["resources"]["shared"] > 101_376
    assert by["small"]["ok"] and by["small-lazy"]["ok"]  # pending items are run; area from the provider
    assert (
        by["small-lazy"]["area"] == "moe-reference" and by["small-lazy"]["kernel"] == "fused_moe_kernel:down"
    )
    assert (
        out["summary"]["failed"] == 1
        and out["summary"]["checked"] == 3
        and out["summary"]["exit_status"] == 1
    )


def test_table(reference_only, capsys):
    rc = main(["check", "--gpu", "4090"])
    cap = capsys.readouterr()
    assert rc == 1
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


@pytest.fixture
def tiny_moe(monkeypatch, tmp_path):
    """The MoE provider on small layers and two batch sizes, no config files."""
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(moe, "GRID", (1, 64))
    monkeypatch.setattr(moe, "file_keys", lambda spec, roots: [])

    def use(*shapes):
        monkeypatch.setattr(moe, "SHAPES", tuple(moe.NamedShape(f"tiny{i}", s) for i, s in enumerate(shapes)))

    return use


def _finished(provider, spec):
    return [done for item in provider.items(spec, full=False) for done in finish(item)]


def test_moe_provider_uses_sglangs_choice(tiny_moe):
    """The MoE baseline compiles SGLang's own pick for each batch size, both GEMMs."""
    tiny_moe(MoeShape(8, 256, 512, 2))
    items = _finished(moe.MoeProvider("moe-baseline", baseline=True), find_gpu(RTX_4090))
    assert len(items) == 4 and all(i.ok for i in items)
    # SGLang's default for M <= E is 16x32x64 and 64x64x32 above (fused_moe_triton_config.py)
    assert "M=1 up: 16x32x64" in items[0].config and "M=64 up: 64x64x32" in items[2].config
    assert [i.kernel for i in items[:2]] == ["fused_moe_kernel:up", "fused_moe_kernel:down"]


def test_moe_provider_picks_are_the_plugins_heuristic_listed_once(tiny_moe):
    """With the plugin active SGLang's pick is the heuristic's tile (no file for this
    layer), and the heuristic source adds no second row for the same tile."""
    shape = MoeShape(8, 256, 512, 2)
    tiny_moe(shape)
    spec = find_gpu(RTX_4090)
    configs = [i.config for i in moe.MoeProvider("moe", baseline=False).items(spec, full=False)]
    assert configs == [
        f"tiny0 {shape.label} M={M} {gemm}: {tile_label(heuristic_config(M, shape, spec))}"
        for M in (1, 64)
        for gemm in ("up", "down")
    ]


def test_sglang_ships_tuned_files_for_the_4090():
    shapes = moe.sglang_file_shapes(find_gpu(RTX_4090))
    assert {(n.shape.E, n.shape.N, n.shape.dtype) for n in shapes} == {
        (64, 640, "fp8_w8a8"),
        (8, 3584, "fp8_w8a8"),
    }


def test_fp8_without_e4m3_is_the_fp8_familys_or_a_skip_with_the_reason(tiny_moe):
    """Before sm_89 Triton refuses e4m3 ('fp8e4nv not supported in this architecture'): no config of
    SGLang's kernel can run an fp8 layer there. On sm_80-sm_88 the fp8 family's weight-only kernel
    takes the layer (area fp8-moe), so the moe area has no row for it; below sm_80 it is one SKIP row
    saying so (not a FAIL, not dropped)."""
    tiny_moe(MoeShape(8, 256, 512, 2, "fp8_w8a8"))
    assert _finished(moe.MoeProvider("moe", baseline=False), find_gpu("NVIDIA GeForce RTX 3090")) == []
    (skip,) = _finished(moe.MoeProvider("moe", baseline=False), find_gpu("Tesla T4"))
    assert skip.status == "SKIP" and "fp8e4nv" in skip.skip and "sm_75" in skip.skip
    items = _finished(moe.MoeProvider("moe", baseline=False), find_gpu(RTX_4090))
    assert len(items) == 4 and all(i.ok for i in items)


def test_fp8_skip_rows_in_the_table_do_not_fail_check(tiny_moe, capsys):
    tiny_moe(MoeShape(8, 256, 512, 2, "fp8_w8a8"), MoeShape(8, 256, 512, 2))
    rc = main(["check", "--gpu", "Tesla T4", "--only", "moe"])
    out = capsys.readouterr().out
    assert rc == 0
    skip_row = next(line for line in out.splitlines() if line.rstrip().endswith("SKIP"))
    assert "tiny0" in skip_row and "no fp8 e4m3" in skip_row
    assert "1 SKIP" in out and "moe: 4/4 pass, 1 skip" in out
