"""The bundled configs: in the package, with provenance, valid, and proven to fit by the oracle."""

from __future__ import annotations

import json

import pytest

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import BUNDLED_DIR
from sglang_consumer_gpu.moe.validate import load_config_file
from sglang_consumer_gpu.oracle.kernels.moe import layer_shared

MANIFEST = json.loads((BUNDLED_DIR / "manifest.json").read_text())
FILES = sorted(MANIFEST["files"].items())


def test_manifest_matches_files():
    on_disk = {p.name for p in BUNDLED_DIR.glob("*.json")} - {"manifest.json"}
    assert on_disk == set(MANIFEST["files"])
    assert any("RTX_4090" in n for n in on_disk) and any("L40S" in n for n in on_disk)
    for name, meta in FILES:
        assert meta["project"] in ("sglang", "vllm") and meta["release"] and meta["original_path"], name
        assert meta["sha256"] and meta["device"], name
        if meta["project"] == "sglang":
            assert meta["triton_dir"].startswith("triton_"), name


@pytest.mark.parametrize("name, meta", FILES, ids=[n for n, _ in FILES])
def test_bundled_file_validates_for_its_gpu(name, meta):
    spec = find_gpu(meta["device"])
    bs = tuple(meta["block_shape"]) if meta["block_shape"] else None
    configs = load_config_file(BUNDLED_DIR / name, dtype=meta["dtype"], block_shape=bs, spec=spec)
    assert len(configs) == meta["entries"]


def test_every_bundled_entry_fits_by_the_oracle():
    """Distinct (GPU arch, dtype, config) only: shared memory depends on the tile, not on E/N/K."""
    seen = {}
    for name, meta in FILES:
        spec = find_gpu(meta["device"])
        bs = tuple(meta["block_shape"]) if meta["block_shape"] else None
        shape = MoeShape(64, 1024, 4096, 8, meta["dtype"], bs, meta["per_channel_quant"])
        for cfg in json.loads((BUNDLED_DIR / name).read_text()).values():
            key = (
                spec.arch,
                spec.smem_per_block_optin,
                meta["dtype"],
                bs,
                meta["per_channel_quant"],
                json.dumps(cfg, sort_keys=True),
            )
            seen.setdefault(key, (spec, shape, cfg, name))
    fails = []
    for spec, shape, cfg, name in seen.values():
        shared = layer_shared(spec, shape, 64, cfg)
        if shared > spec.smem_per_block_optin:
            fails.append((name, cfg, shared))
    assert not fails, fails


def test_check_provider_zero_fails_rtx_3090():
    """The `check` MoE provider's items for a GPU compile and fit (RTX 3090: its fp8 layers are the fp8
    family's, area fp8-moe, so none here and no SKIP)."""
    from sglang_consumer_gpu.families.moe import MoeProvider
    from sglang_consumer_gpu.oracle.item import finish

    items = list(MoeProvider("moe", baseline=False).items(find_gpu("RTX 3090"), full=False))
    assert items
    results = [r for it in items for r in finish(it)]
    assert not [r for r in results if r.status == "SKIP" or "fp8" in r.config]
    failed = [(r.config, r.error) for r in results if r.status == "FAIL"]
    assert not failed, failed
