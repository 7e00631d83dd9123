"""Block sizes for SGLang's Triton attention kernels, from the GPU's shared-memory budget.

SGLang 0.5.23 picks these from ``if CUDA_CAPABILITY == ...`` branches, so
every new GPU class with a ~99 KB budget (sm_86, sm_89, sm_120, ...) first
crashes with ``OutOfResources`` and then gets one more branch. Here the
choice is a pure function of the :class:`GpuSpec`'s opt-in shared memory and
the head dims: walk a preference-ordered list of tile shapes and take the
first whose analytic upper bound (:mod:`.model`) fits the budget.

The preference order is the data-center order SGLang uses where memory is
plentiful (larger query tiles first), re-ranked by the H100 timings of the
sm_89-feasible candidates in ``results/h100/attention/bench_attention.json`` (see
docs/lab/attention.md for the table and the command).
"""

from __future__ import annotations

from sglang_consumer_gpu.attention.model import AttentionTile, attention_smem_bytes, qk_tile_width
from sglang_consumer_gpu.attention.model import next_pow2 as _pow2
from sglang_consumer_gpu.hardware.spec import GpuSpec

#: (BLOCK_M, BLOCK_N) in order of preference, by padded query/key head width.
#: Ranked by the H100 timings of every sm_89-feasible tile (results/h100/attention/bench_attention_run1.json,
#: prefill-heavy and decode-heavy): the first entry is the tile with the best geometric mean
#: over both workloads among those never below 0.9x SGLang's sm_89 branch.
EXTEND_PREFERENCE: dict[str, tuple[tuple[int, int], ...]] = {
    # head dims 80 and 96: 128x64 measured 1.66x / 1.19x (prefill-/decode-heavy) vs 64x128
    "le128_mid": ((128, 64), (64, 128), (64, 64), (32, 64), (32, 32), (16, 32), (16, 16)),
    # 64: 128x64 is 0.93x / 0.46x and 64x64 0.82x decode-heavy; 128: 128x64 is 0.895x decode-heavy
    "le128": ((64, 128), (128, 64), (64, 64), (32, 64), (32, 32), (16, 32), (16, 16)),
    "le256": ((64, 64), (32, 64), (64, 32), (32, 32), (16, 32), (16, 16)),
    "wide": ((32, 64), (32, 32), (16, 32), (16, 16)),
}

#: Context (prefill) attention uses one square tile, BLOCK_M == BLOCK_N. H100 timings of the
#: sm_89-feasible tiles (8 images x 1024 tokens): 128 is 1.83-1.86x faster than 64 at head dims
#: 80/96/128 but 0.71x at 64 and 0.89x at 72, so 128 comes first only for 80..128.
PREFILL_PREFERENCE: tuple[int, ...] = (128, 64, 32, 16)
PREFILL_PREFERENCE_SMALL: tuple[int, ...] = (64, 128, 32, 16)


def _width_class(dq_tile: int, lq: int = 0) -> str:
    if dq_tile <= 128:
        return "le128_mid" if 64 < lq <= 96 else "le128"
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
    for block_m, block_n in EXTEND_PREFERENCE[_width_class(dq, lq)]:
        if attention_smem_bytes(block_m, block_n, dq, dv, elem_bytes) <= spec.smem_per_block_optin:
            return AttentionTile(block_m, block_n, extend_warps(lq), 1)
    raise ValueError(
        f"no extend-attention tile for head dims {lq}/{lv} fits {spec.smem_per_block_optin} bytes on {spec.name}"
    )


def prefill_tile(spec: GpuSpec, lk: int, elem_bytes: int = 2) -> AttentionTile:
    """Square tile for SGLang's context (prefill) attention kernel
    (``prefill_attention.context_attention_fwd``, used by vision encoders)."""
    d = _pow2(lk)  # the prefill kernel pads the head dim to a power of two, no rope split
    for block in PREFILL_PREFERENCE if 80 <= lk <= 128 else PREFILL_PREFERENCE_SMALL:
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
