"""Which int8 GEMM each GPU gets, the dispatch table, and the oracle's proof
that every tile the table can pick fits 101,376 bytes on sm_86/sm_89/sm_120."""

from __future__ import annotations

import json

import pytest

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.int8.backend import SGL_KERNEL, TRITON, int8_backend_for, needed_on
from sglang_consumer_gpu.int8.tiles import (
    M_BUCKETS,
    SAFE_TILE,
    Tile,
    load_tables,
    m_bucket,
    parse_tables,
    select_tile,
    table_for,
)


@pytest.mark.parametrize(
    ("gpu", "backend"),
    [
        ("RTX 4090", SGL_KERNEL),
        ("L40S", SGL_KERNEL),
        ("RTX 3090", SGL_KERNEL),
        ("NVIDIA A100-SXM4-80GB", SGL_KERNEL),
        ("NVIDIA H100 80GB HBM3", SGL_KERNEL),
        ("Tesla T4", SGL_KERNEL),
        ("RTX 5090", TRITON),
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", TRITON),
        ("RTX 5080", TRITON),
    ],
)
def test_backend_per_gpu(gpu: str, backend: str) -> None:
    spec = find_gpu(gpu)
    got, why = int8_backend_for(spec)
    assert got == backend, why
    assert needed_on(spec) is (backend == TRITON)
    if backend == TRITON:
        assert "No implemented int8_scaled_mm for current compute capability" in why


@pytest.mark.parametrize(
    ("cap", "backend"), [((10, 0), TRITON), ((10, 3), TRITON), ((12, 1), TRITON), ((7, 0), SGL_KERNEL)]
)
def test_backend_per_arch(cap: tuple[int, int], backend: str) -> None:
    assert int8_backend_for(GpuSpec.for_arch(*cap))[0] == backend


def test_m_buckets() -> None:
    assert m_bucket(1) == 16
    assert m_bucket(16) == 16
    assert m_bucket(17) == 32
    assert m_bucket(4097) == 8192
    assert m_bucket(100_000) == 8192


def test_table_covers_consumer_archs_and_every_bucket() -> None:
    (table,) = load_tables()
    assert set(table.archs) == {86, 89, 120}
    assert table.smem_limit == 101_376
    for b in M_BUCKETS:
        assert (b, 0, 0) in table.entries


def test_selection_is_per_shape_with_bucket_default() -> None:
    spec = find_gpu("RTX 5090")
    table = table_for(spec)
    shaped = [(key, tile) for key, tile in table.entries.items() if key[1]]
    assert shaped, "the tuned table has per-shape entries"
    (b, n, k), tile = shaped[0]
    assert select_tile(spec, b, n, k) == tile
    # An unlisted shape gets the bucket default.
    assert select_tile(spec, b, 8, 16) == table.entries[(b, 0, 0)]


def test_other_gpus_get_a_table_that_fits_or_the_safe_tile() -> None:
    assert table_for(GpuSpec.for_arch(10, 0)).name == "low_smem"  # 232,448 B >= 101,376 B
    t4 = find_gpu("Tesla T4")  # 65,536 B: no table proven for it
    assert table_for(t4) is None
    assert select_tile(t4, 64, 4096, 4096) == SAFE_TILE


def test_table_parse_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unsupported format"):
        parse_tables({"format": 2})
    doc = {
        "format": 1,
        "tables": {
            "t": {"archs": [89], "smem_limit": 1, "entries": [{"m": 16, "tile": [16, 64, 64, 8, 4, 2]}]}
        },
    }
    with pytest.raises(ValueError, match="no default tile for M buckets"):
        parse_tables(doc)
    doc["tables"]["t"]["entries"] = [{"m": 3, "tile": [16, 64, 64, 8, 4, 2]}]
    with pytest.raises(ValueError, match="m=3 is not one of"):
        parse_tables(doc)
    with pytest.raises(ValueError, match="a tile is"):
        Tile.from_list([16, 64])


def test_table_file_is_valid_json_with_provenance() -> None:
    from importlib import resources

    doc = json.loads(resources.files("sglang_consumer_gpu.int8").joinpath("dispatch_table.json").read_text())
    assert "oracle" in doc["about"] and "H100" in doc["about"]


# ------------------------------------------------------------------ oracle


@pytest.fixture(scope="module")
def oracle_results() -> dict[tuple[Tile, int], int]:
    """Compile every table tile for sm_86, sm_89 and sm_120 (compile-only)."""
    from sglang_consumer_gpu.families.int8 import tiles_for
    from sglang_consumer_gpu.oracle.kernels.int8 import tile_resources

    out = {}
    for arch in (86, 89, 120):
        spec = GpuSpec.for_arch(*divmod(arch, 10))
        for tile in tiles_for(spec):
            out[(tile, arch)] = tile_resources(spec, tile).shared
    return out


def test_every_table_tile_fits_consumer_gpus(oracle_results: dict[tuple[Tile, int], int]) -> None:
    (table,) = load_tables()
    assert {t for t, _ in oracle_results} == set(table.tiles())
    too_big = {f"{t.label()} sm_{a}: {s}" for (t, a), s in oracle_results.items() if s > 101_376}
    assert not too_big


def test_oracle_rejects_a_tile_that_does_not_fit() -> None:
    """The proof can fail: 128x256x128 with 4 stages keeps 3 x 48 KiB of buffers."""
    from sglang_consumer_gpu.oracle.kernels.int8 import tile_resources

    r = tile_resources(GpuSpec.for_arch(8, 9), Tile(128, 256, 128, 8, 8, 4))
    assert r.shared > 101_376 and not r.fits


def test_check_items_provider() -> None:
    from sglang_consumer_gpu.checks.registry import PROVIDERS
    from sglang_consumer_gpu.families.int8 import Int8Provider
    from sglang_consumer_gpu.oracle.item import finish

    assert Int8Provider() in PROVIDERS
    items = list(Int8Provider().items(GpuSpec.for_arch(12, 0), full=False))
    assert len(items) == len(load_tables()[0].tiles())
    done = finish(items[0])
    assert done and all(item.ok for item in done), done


def test_the_shipped_table_is_what_the_tuning_run_derives() -> None:
    """The package data comes from the package's own function (tune.int8.derive) of the H100 run."""
    from pathlib import Path

    from sglang_consumer_gpu.tune.int8 import TABLE_PATH, derive

    run = Path(__file__).parent / "fixtures" / "results" / "h100_int8_tune.json"
    assert derive(json.loads(run.read_text())) == json.loads(TABLE_PATH.read_text())
