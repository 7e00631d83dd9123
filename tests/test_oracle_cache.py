"""The oracle's on-disk compile cache: hits skip Triton, corrupt entries are never trusted."""

from __future__ import annotations

import json

import pytest

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.oracle.cache import CompileCache, cache_key
from sglang_consumer_gpu.oracle.kernels.moe import dry_run

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
SMALL = dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=32, BLOCK_SIZE_K=64, GROUP_SIZE_M=1, num_warps=4, num_stages=2)
KW = dict(E=8, N=256, K=512, topk=2, M=4, dtype=None, block_shape=None, config=SMALL)


def _moe_launch(cache: CompileCache):
    launches = [x for x in dry_run(RTX_4090, cache=cache, **KW) if x.kernel == "fused_moe_kernel"]
    assert len(launches) == 1
    return launches[0]


def test_hit_after_miss_with_the_same_number(tmp_path):
    cold = _moe_launch(CompileCache(tmp_path))
    warm = _moe_launch(CompileCache(tmp_path))  # a fresh process's view: only the disk
    assert not cold.cached and warm.cached
    assert warm.resources == cold.resources
    assert cold.key == warm.key and len(cold.key) == 64
    files = list(tmp_path.rglob("*.json"))
    assert [f.name for f in files] == [f"{cold.key}.json"]
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic write left nothing behind


@pytest.mark.parametrize(
    "garbage",
    [
        b"{not json",
        json.dumps({"kernel": "fused_moe_kernel", "shared": "lots"}).encode(),
        json.dumps([1, 2]).encode(),
        b"[" * 100_000 + b"]" * 100_000,  # issue 16.6: too large / too deep for json
        b"[" * 20_000 + b"]" * 20_000,  # small enough to read, deep enough to exhaust json's recursion
        b'{"kernel": "\xff\xfe", "shared": 1}',  # not UTF-8
    ],
    ids=["malformed", "wrong-type", "not-an-object", "deep-large", "deep-small", "not-utf8"],
)
def test_corrupt_entry_is_ignored_and_rewritten(tmp_path, garbage):
    """A corrupt entry is a miss (never a false FAIL) and is replaced by a good one."""
    cold = _moe_launch(CompileCache(tmp_path))
    path = CompileCache(tmp_path).path(cold.key)
    path.write_bytes(garbage)
    cache = CompileCache(tmp_path)
    again = _moe_launch(cache)
    assert not again.cached and cache.corrupt == 1  # recompiled, not trusted
    assert again.resources == cold.resources
    assert json.loads(path.read_text())["shared"] == cold.resources.shared  # rewritten
    assert _moe_launch(CompileCache(tmp_path)).cached


def test_entry_for_another_key_is_not_trusted(tmp_path):
    cache = CompileCache(tmp_path)
    key, other = cache_key(a=1), cache_key(a=2)
    cache.put(other, {"kernel": "k", "shared": 1, "num_warps": 4, "num_stages": 2})
    cache.path(key).parent.mkdir(parents=True, exist_ok=True)
    cache.path(key).write_text(cache.path(other).read_text())
    assert CompileCache(tmp_path).get(key) is None
    assert CompileCache(tmp_path).get(other)["shared"] == 1


def test_key_covers_what_decides_the_kernel():
    base = dict(source="s", triton="3.8.0", target="cuda:89:32", specialization=["x"], options="o")
    keys = {cache_key(**base)}
    for field, value in [("source", "t"), ("triton", "3.6.0"), ("target", "cuda:90:32"), ("options", "p")]:
        keys.add(cache_key(**{**base, field: value}))
    assert len(keys) == 5
