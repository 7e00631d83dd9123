"""What the tuner may try: the pruned space, neighbours, GROUP_SIZE_M variants, specializations.

Configs are named by :func:`~sglang_consumer_gpu.measure.moe.config_key` strings
(``16x32x128-g1-w4-s5``) everywhere in the tuner, so that state files are plain JSON.

- **Space**: :func:`~sglang_consumer_gpu.measure.moe_sweep.bound_space`, the benchmark rounds'
  space -- SGLang's tuning space with GROUP_SIZE_M 1, 8 warps only for tiles of at least
  64x128, 4 warps only up to 128x128, the two deepest pipelines per tile -- restricted to what
  the analytic shared-memory bound admits on the target GPU. The bound never undercounts
  Triton's allocation, so nothing pruned away here could have been timed without a risk of
  ``OutOfResources``, and the exhaustive reference the tuner is measured against is the same
  space.
- **Neighbours** of a config: the tiles one step (x2 or /2) away in BLOCK_SIZE_M, _N or _K with
  the same warps where the space has them (else any), and the other warps/stages of its own
  tile.
- **GROUP_SIZE_M** only reorders the blocks so that several M-blocks of one expert read its
  weight tiles while they are in L2. With fewer than two M-blocks per expert there is nothing
  to reuse, so variants are tried only where the expected tokens per active expert reach two
  BLOCK_SIZE_M; and every GROUP_SIZE_M at or above the number of M-blocks gives the same launch
  order, so only the smallest of those is tried.
- **Specialization**: Triton specializes the kernel's integer arguments that equal 1 or are
  divisible by 16. The two that change with the batch size are the routing buffer length
  (``EM``, sized by SGLang's own ``moe_align_block_size``) and the number of routed tokens
  (M x top-k); batch sizes with the same pair share one compiled kernel per config (for
  Qwen3-30B-A3B: M = 1 and every even M), so a config compiled for one is free for the others.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sglang_consumer_gpu.measure.moe import config_key, launch_config, parse_config_key
from sglang_consumer_gpu.measure.moe_sweep import GROUP_SIZES, bound_space
from sglang_consumer_gpu.moe.heuristic import expected_active_experts
from sglang_consumer_gpu.moe.shape import MoeShape

#: The batch sizes SGLang's (and vLLM's) tuning script writes into a config file.
SGLANG_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048,
                                       3072, 4096)  # fmt: skip

def key_of(config: dict) -> str:
    """The tuner's name of a config (launch keys only; Triton's defaults filled in)."""
    return config_key(launch_config(config))


def tile(key: str) -> tuple[int, int, int]:
    c = parse_config_key(key)
    return c["BLOCK_SIZE_M"], c["BLOCK_SIZE_N"], c["BLOCK_SIZE_K"]


def block_m(key: str) -> int:
    return parse_config_key(key)["BLOCK_SIZE_M"]


def with_group(key: str, group: int) -> str:
    return config_key({**parse_config_key(key), "GROUP_SIZE_M": group})


@dataclass(frozen=True)
class Space:
    """The configs (GROUP_SIZE_M 1) the tuner may compile, and the size of the unpruned space."""

    keys: tuple[str, ...]
    size: int

    @classmethod
    def for_shape(cls, spec: object, shape: MoeShape) -> Space:
        configs, size = bound_space(spec, shape)
        return cls(tuple(sorted(config_key(c) for c in configs)), size)

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __len__(self) -> int:
        return len(self.keys)

    @functools.cached_property
    def _set(self) -> frozenset[str]:
        return frozenset(self.keys)

    @functools.cached_property
    def _by_tile(self) -> dict[tuple[int, int, int], list[str]]:
        out: dict[tuple[int, int, int], list[str]] = {}
        for k in self.keys:
            out.setdefault(tile(k), []).append(k)
        return out

    def neighbours(self, key: str) -> list[str]:
        """Configs of the space one step from ``key`` (see the module docstring); ``key``
        itself need not be in the space (the heuristic's or SGLang's choice)."""
        c = parse_config_key(key)
        here = tile(key)
        out = [k for k in self._by_tile.get(here, []) if k != with_group(key, 1)]
        for axis in range(3):
            for factor in (2, 0.5):
                t = list(here)
                t[axis] = int(t[axis] * factor)
                same_warps = [k for k in self._by_tile.get(tuple(t), [])
                              if parse_config_key(k)["num_warps"] == c["num_warps"]]  # fmt: skip
                out += same_warps or self._by_tile.get(tuple(t), [])
        return sorted(set(out))


# ------------------------------------------------------------------------------ batch-size facts


@functools.lru_cache(maxsize=4096)
def routing_buffer(E: int, topk: int, M: int, bm: int) -> int:
    """``EM``: the length of the routing buffer SGLang's ``moe_align_block_size`` allocates (its
    own allocation code runs on ``meta`` tensors; the fill kernels are not run)."""
    import torch

    from sglang_consumer_gpu.oracle.kernels.moe import align_without_fill

    with align_without_fill() as alloc:
        sorted_ids, _, _ = alloc(torch.empty(M, topk, device="meta", dtype=torch.int32), bm, E)
    return int(sorted_ids.shape[0])


def _divisibility(x: int) -> str:
    return "1" if x == 1 else "16" if x % 16 == 0 else "n"


def specialization(shape: MoeShape, M: int, bm: int) -> str:
    """Which compiled kernel a batch size needs for a BLOCK_SIZE_M (see the module docstring)."""
    return f"EM{_divisibility(routing_buffer(shape.E, shape.topk, M, bm))}.T{_divisibility(M * shape.topk)}"


def tokens_per_expert(shape: MoeShape, M: int) -> float:
    """Expected routed tokens per active expert at M tokens (uniform routing)."""
    routed = M * shape.topk
    return routed / expected_active_experts(routed, shape.E)


def group_variants(shape: MoeShape, M: int, key: str) -> list[str]:
    """The GROUP_SIZE_M variants of ``key`` worth timing at M (see the module docstring)."""
    bm = block_m(key)
    if tokens_per_expert(shape, M) < 2 * bm:
        return []
    m_blocks = -(-routing_buffer(shape.E, shape.topk, M, bm) // bm)
    out: list[str] = []
    for g in sorted(GROUP_SIZES):
        out.append(with_group(key, g))
        if g >= m_blocks:
            break
    return [k for k in out if k != key]
