"""Block sizes for SGLang's Triton attention kernels, from the GPU's shared-memory budget.

SGLang 0.5.23 picks these from ``if CUDA_CAPABILITY == ...`` branches, so
every new GPU class with a ~99 KB budget (sm_86, sm_89, sm_120, ...) first
crashes with ``OutOfResources`` and then gets one more branch. Here the
choice is a pure function of the :class:`GpuSpec`'s opt-in shared memory and
the head dims: walk a preference-ordered list of tile shapes and take the
first whose analytic upper bound (:mod:`.model`) fits the budget.

The preference order is the data-center order SGLang uses where memory is
plentiful (larger query tiles first), re-ranked by the H100 timings of the
sm_89-feasible candidates in ``results/bench_attention.json`` (see
docs/attention.md for the table and the command).
"""

from __future__ import annotations

from sglang_consumer_gpu.attention.model import AttentionTile, attention_smem_bytes, qk_tile_width
from sglang_consumer_gpu.attention.model import next_pow2 as _pow2
from sglang_consumer_gpu.hardware.spec import GpuSpec

#: (BLOCK_M, BLOCK_N) in order of preference, by padded query/key head width.
EXTEND_PREFERENCE: dict[str, tuple[tuple[int, int], ...]] = {
    "le128": ((64, 128), (128, 64), (64, 64), (32, 64), (32, 32), (16, 32), (16, 16)),
    "le256": ((64, 64), (32, 64), (64, 32), (32, 32), (16, 32), (16, 16)),
    "wide": ((32, 64), (32, 32), (16, 32), (16, 16)),
}

#: Context (prefill) attention uses one square tile, BLOCK_M == BLOCK_N.
PREFILL_PREFERENCE: tuple[int, ...] = (128, 64, 32, 16)


def _width_class(dq_tile: int) -> str:
    if dq_tile <= 128:
        return "le128"
    if dq_tile <= 256:
        return "le256"
    return "wide"


def extend_warps(lq: int) -> int:
    """SGLang's own rule (4 warps up to head dim 64, else 8), kept: it is not
    a shared-memory question, and the timings in docs/attention.md compare
    tile shapes at equal warps."""
    return 4 if lq <= 64 else 8


def extend_tile(spec: GpuSpec, lq: int, lv: int, elem_bytes: int = 2) -> AttentionTile:
    """Tile for SGLang's extend / dense-prefill / unified extend kernels.

    Raises ``ValueError`` if no candidate fits (a head dim so wide that even a
    16x16 tile overflows the budget), so a caller can fall back to SGLang.
    """
    dmodel, dpe = qk_tile_width(lq)
    dq, dv = dmodel + dpe, qk_tile_width(lv)[0]
    for block_m, block_n in EXTEND_PREFERENCE[_width_class(dq)]:
        if attention_smem_bytes(block_m, block_n, dq, dv, elem_bytes) <= spec.smem_per_block_optin:
            return AttentionTile(block_m, block_n, extend_warps(lq), 1)
    raise ValueError(
        f"no extend-attention tile for head dims {lq}/{lv} fits {spec.smem_per_block_optin} bytes on {spec.name}"
    )


def prefill_tile(spec: GpuSpec, lk: int, elem_bytes: int = 2) -> AttentionTile:
    """Square tile for SGLang's context (prefill) attention kernel
    (``prefill_attention.context_attention_fwd``, used by vision encoders)."""
    d = _pow2(lk)  # the prefill kernel pads the head dim to a power of two, no rope split
    for block in PREFILL_PREFERENCE:
        if attention_smem_bytes(block, block, d, d, elem_bytes) <= spec.smem_per_block_optin:
            return AttentionTile(block, block, 4 if lk <= 64 else 8, 1)
    raise ValueError(f"no prefill-attention tile for head dim {lk} fits {spec.smem_per_block_optin} bytes")


def tile_fits(
    spec: GpuSpec,
    block_m: int,
    block_n: int,
    dq_tile: int,
    dv_tile: int,
    elem_bytes: int = 2,
    num_stages: int = 1,
) -> bool:
    """Whether a given launch (e.g. SGLang's own choice) fits ``spec`` by the model."""
    return (
        attention_smem_bytes(block_m, block_n, dq_tile, dv_tile, elem_bytes, num_stages)
        <= spec.smem_per_block_optin
    )
