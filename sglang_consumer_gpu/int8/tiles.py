"""Tile configurations for the Triton int8 GEMM, and the dispatch table as data.

The table (``dispatch_table.json`` next to this file) maps (M bucket, N, K) to
a tile, per table; each table names the architectures it was proven for. The
check provider (:mod:`sglang_consumer_gpu.checks.int8`) compiles every
entry for each of those architectures and fails if one does not fit, so a tile
that would overflow 101,376 bytes of shared memory on an RTX 4090 cannot be
added silently. Selection is a pure function of the GpuSpec and the shape.
"""

from __future__ import annotations

import bisect
import functools
import json
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec

#: Upper ends of the M buckets; a row count goes to the first bucket >= it, and
#: anything above the last bucket uses the last one.
M_BUCKETS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

TABLE_FILE = "dispatch_table.json"


@dataclass(frozen=True, order=True)
class Tile:
    """One launch configuration of ``int8_scaled_mm_kernel``."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3

    def launch_kwargs(self) -> dict[str, int]:
        return {
            "BLOCK_M": self.block_m,
            "BLOCK_N": self.block_n,
            "BLOCK_K": self.block_k,
            "GROUP_M": self.group_m,
            "num_warps": self.num_warps,
            "num_stages": self.num_stages,
        }

    def to_list(self) -> list[int]:
        return [self.block_m, self.block_n, self.block_k, self.group_m, self.num_warps, self.num_stages]

    @classmethod
    def from_list(cls, values: list[int]) -> Tile:
        if len(values) != 6 or not all(isinstance(v, int) and v > 0 for v in values):
            raise ValueError(
                f"a tile is [block_m, block_n, block_k, group_m, num_warps, num_stages], got {values!r}"
            )
        return cls(*values)

    def label(self) -> str:
        d = asdict(self)
        return "BM{block_m}_BN{block_n}_BK{block_k}_G{group_m}_w{num_warps}_s{num_stages}".format(**d)


#: The tuning space. Triton keeps ``num_stages - 1`` A+B buffers in shared
#: memory, so these are the tiles whose buffers stay <= 96 KiB (measured with
#: the oracle: e.g. 128x128x128 at 4 stages needs 98,304 bytes on sm_89).
#: Tuning times only those the oracle proves fit sm_86, sm_89 and sm_120.
CANDIDATES: tuple[Tile, ...] = (
    Tile(16, 64, 128, 8, 4, 4),
    Tile(16, 64, 256, 8, 4, 4),
    Tile(16, 128, 128, 8, 4, 4),
    Tile(16, 128, 256, 8, 4, 3),
    Tile(16, 256, 128, 8, 4, 3),
    Tile(32, 64, 128, 8, 4, 4),
    Tile(32, 64, 256, 8, 4, 3),
    Tile(32, 128, 128, 8, 4, 5),
    Tile(32, 128, 256, 8, 4, 3),
    Tile(32, 256, 128, 8, 4, 3),
    Tile(64, 64, 128, 8, 4, 5),
    Tile(64, 64, 256, 8, 4, 3),
    Tile(64, 128, 64, 8, 4, 4),
    Tile(64, 128, 128, 8, 4, 3),
    Tile(64, 128, 128, 8, 4, 5),
    Tile(64, 256, 64, 8, 8, 4),
    Tile(64, 256, 128, 8, 8, 3),
    Tile(128, 64, 128, 8, 4, 4),
    Tile(128, 128, 64, 8, 4, 4),
    Tile(128, 128, 64, 8, 8, 5),
    Tile(128, 128, 128, 8, 8, 3),
    Tile(128, 128, 128, 8, 8, 4),
    Tile(128, 256, 64, 8, 8, 4),
    Tile(128, 256, 128, 8, 8, 3),
    Tile(256, 128, 64, 8, 8, 4),
    Tile(256, 128, 128, 8, 8, 3),
)

#: Used for GPUs with less shared memory than any table was proven for (e.g.
#: sm_75, 65,536 bytes); the oracle checks it there too.
SAFE_TILE = Tile(32, 64, 64, 8, 4, 2)


def m_bucket(m: int) -> int:
    i = bisect.bisect_left(M_BUCKETS, m)
    return M_BUCKETS[min(i, len(M_BUCKETS) - 1)]


@dataclass(frozen=True)
class DispatchTable:
    """One table: which architectures it covers and (M bucket, N, K) -> Tile.

    Keys with N = K = 0 are the per-bucket default for shapes not listed.
    """

    name: str
    archs: tuple[int, ...]
    smem_limit: int  # the smallest opt-in shared memory of those archs
    entries: dict[tuple[int, int, int], Tile]

    def lookup(self, m: int, n: int, k: int) -> Tile:
        b = m_bucket(m)
        tile = self.entries.get((b, n, k)) or self.entries.get((b, 0, 0))
        if tile is None:
            raise KeyError(f"int8 dispatch table {self.name!r} has no default for M bucket {b}")
        return tile

    def tiles(self) -> list[Tile]:
        return sorted(set(self.entries.values()))


def parse_tables(doc: dict[str, Any]) -> tuple[DispatchTable, ...]:
    """Validate and load the JSON document (raises ValueError naming the problem)."""
    if doc.get("format") != 1:
        raise ValueError(f"int8 dispatch table: unsupported format {doc.get('format')!r} (expected 1)")
    out = []
    for name, t in doc.get("tables", {}).items():
        entries: dict[tuple[int, int, int], Tile] = {}
        for e in t["entries"]:
            key = (int(e["m"]), int(e.get("n", 0)), int(e.get("k", 0)))
            if key[0] not in M_BUCKETS:
                raise ValueError(f"int8 dispatch table {name!r}: m={key[0]} is not one of {M_BUCKETS}")
            entries[key] = Tile.from_list(e["tile"])
        missing = [b for b in M_BUCKETS if (b, 0, 0) not in entries]
        if missing:
            raise ValueError(f"int8 dispatch table {name!r}: no default tile for M buckets {missing}")
        out.append(DispatchTable(name, tuple(int(a) for a in t["archs"]), int(t["smem_limit"]), entries))
    if not out:
        raise ValueError("int8 dispatch table: no tables")
    return tuple(out)


@functools.lru_cache(maxsize=1)
def load_tables() -> tuple[DispatchTable, ...]:
    text = resources.files("sglang_consumer_gpu.int8").joinpath(TABLE_FILE).read_text()
    return parse_tables(json.loads(text))


def table_for(spec: GpuSpec, tables: tuple[DispatchTable, ...] | None = None) -> DispatchTable | None:
    """The table proven for ``spec``'s architecture; else, for other GPUs, one
    proven for a smaller shared-memory limit than ``spec`` has (a tile that fits
    101,376 bytes fits 232,448); None when no table is known to fit."""
    tables = load_tables() if tables is None else tables
    for t in tables:
        if spec.arch in t.archs:
            return t
    fitting = [t for t in tables if t.smem_limit <= spec.smem_per_block_optin]
    return max(fitting, key=lambda t: t.smem_limit) if fitting else None


def select_tile(spec: GpuSpec, m: int, n: int, k: int) -> Tile:
    """The tile for an (m, n, k) problem on ``spec``."""
    return _select(spec, m_bucket(m), n, k)


@functools.lru_cache(maxsize=4096)
def _select(spec: GpuSpec, bucket: int, n: int, k: int) -> Tile:
    table = table_for(spec)
    if table is None:
        return SAFE_TILE
    return table.lookup(bucket, n, k)
