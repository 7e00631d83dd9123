"""Extend-attention block sizes from the shared-memory budget, not the capability number.

What it changes: ``sglang.kernels.ops.attention.extend_attention.
_get_block_sizes_for_extend_attention(Lq, Lv)``, the helper that
``extend_attention_fwd``, ``extend_attention_fwd_unified`` (deterministic
inference) and ``dense_prefill_attention_fwd`` all call at launch time. The
replacement asks SGLang's own helper first and returns its answer unchanged
when that tile fits the GPU's opt-in shared memory by the analytic upper
bound in :mod:`sglang_consumer_gpu.attention.model`; only otherwise it
returns the first tile of :func:`sglang_consumer_gpu.attention.extend_tile`
that fits (same BLOCK_DMODEL/BLOCK_DPE/BLOCK_DV, different BLOCK_M/BLOCK_N/
num_warps). SGLang keeps ``num_stages=1`` for these kernels on CUDA; so do we.

Why: SGLang picks BLOCK_M/BLOCK_N by ``CUDA_CAPABILITY`` branch. Before its
sm_86/sm_89 branch existed, L40S users hit ``OutOfResources: Required:
102400, Hardware limit: 101376``; RTX PRO 6000 (sm_120) users hit ``Required:
106496`` in the MLA shape (Lq=576) where a capability branch handed a
data-center tile (32x64) to a 99 KB GPU. The oracle reproduces the latter
exactly on Triton 3.8: SGLang's sm_80 tile for Lq=576/Lv=512 (32x64, 8 warps)
compiled for sm_89 needs 106,496 bytes. Any GPU whose capability falls into
a data-center branch while its budget is ~99 KB repeats this.

Versions: SGLang 0.5.4 to 0.5.23: the helper appeared in 0.5.4 in
``sglang.srt.layers.attention.triton_ops.extend_attention`` and moved to
``sglang.kernels.ops.attention.extend_attention`` in 0.5.16 (:data:`SEAMS`).
Before 0.5.4 (0.4.9-0.5.3.post3) the tiles are local variables of
``extend_attention_fwd``: there is no seam and the patch reports "version not
covered". Each release's ``extend_attention_fwd`` calls the helper by name and
launches with ``num_stages=1`` on CUDA (CI checks the call from every covered
wheel). The helper's 6-tuple return shape is checked at call time; anything
else is passed through untouched.

Upstream-fix detection: at apply time SGLang's own helper is run for every
head-dim pair in :data:`sglang_consumer_gpu.attention.HEAD_DIMS` and its tiles
are checked against the current GPU's budget with the analytic model; if all
fit (true for SGLang 0.5.23 on sm_86/sm_89/sm_120, which have their own
branches), the patch reports "already fixed upstream" and installs nothing.
``doctor`` answers the same question without importing SGLang: it compiles
the helper alone from the installed source with the GPU's compute capability
as ``CUDA_CAPABILITY`` (:func:`upstream_fixed_from_source`).
At call time the replacement is also a pass-through whenever SGLang's tile
fits, so an upstream fix for a shape the list misses is honoured too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

from sglang_consumer_gpu.attention import HEAD_DIMS, extend_tile, tile_fits
from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.patching.static import function_from_source
from sglang_consumer_gpu.safety.rules import ShrinkRule

logger = logging.getLogger("sglang_consumer_gpu")

MODULE = "sglang.kernels.ops.attention.extend_attention"
ATTR = "_get_block_sizes_for_extend_attention"
SEAMS = (
    Seam(
        ">=0.5.4,<0.5.16",
        "sglang.srt.layers.attention.triton_ops.extend_attention",
        ATTR,
        ("Lq", "Lv"),
        ("extend_attention_fwd",),
    ),
    Seam(">=0.5.16", MODULE, ATTR, ("Lq", "Lv"), ("extend_attention_fwd",)),
)

# The attention family's other SGLang paths (the launchers the oracle dry-runs, the live engine
# runs and the safety net's rules name; context attention's are in ``attention_prefill``):
EXTEND = Seam(">=0.5.16", MODULE, "extend_attention_fwd")
EXTEND_UNIFIED = Seam(">=0.5.16", MODULE, "extend_attention_fwd_unified")
DENSE_PREFILL = Seam(">=0.5.16", MODULE, "dense_prefill_attention_fwd")
DECODE = Seam(">=0.5.16", "sglang.kernels.ops.attention.decode_attention", "decode_attention_fwd")

#: The safety net's rules for the extend-attention kernels (see :mod:`sglang_consumer_gpu.safety.rules`);
#: unified extend (deterministic inference) fixes its numerics with its tile: stages only.
SHRINK_RULES: tuple[ShrinkRule, ...] = (
    ShrinkRule(
        kernel="_fwd_kernel",
        modules=(MODULE,),
        params=("BLOCK_N", "BLOCK_N_PREFIX"),
        minimum=16,
        safe_because="the grid is (batch, heads, cdiv(len, BLOCK_M)); BLOCK_N/BLOCK_N_PREFIX are only the KV-loop "
        "steps of the online softmax (masked tail)",
        hint="use another attention backend (--attention-backend flashinfer) for this model",
    ),
    ShrinkRule(
        kernel="_fwd_kernel_dense_prefill",
        modules=(MODULE,),
        params=("BLOCK_N",),
        minimum=16,
        safe_because="the grid is (batch, heads, cdiv(len, BLOCK_M)); BLOCK_N is only the KV-loop step (masked "
        "tail, full-tile bound rounded down to BLOCK_N)",
        hint="use another attention backend (--attention-backend flashinfer) for this model",
    ),
)
NUMERICS_FIXED: dict[str, tuple[str, ...]] = {"_fwd_kernel_unified": (MODULE,)}


def sglang_tile_fits(spec: GpuSpec, blocks: tuple[int, ...]) -> bool:
    """Whether SGLang's ``(BLOCK_DMODEL, BLOCK_DPE, BLOCK_DV, BLOCK_M, BLOCK_N, num_warps)`` fits ``spec``."""
    dmodel, dpe, dv, block_m, block_n, _warps = blocks
    return tile_fits(spec, block_m, block_n, dmodel + dpe, dv)


def choose(spec: GpuSpec, lq: int, lv: int, sglang_blocks: Any) -> Any:
    """SGLang's answer if it fits ``spec``, else the budget-derived tile (pure)."""
    if not (isinstance(sglang_blocks, tuple) and len(sglang_blocks) == 6):
        return sglang_blocks  # SGLang changed the helper's contract: do not guess
    if sglang_tile_fits(spec, sglang_blocks):
        return sglang_blocks
    try:
        tile = extend_tile(spec, lq, lv)
    except ValueError as exc:
        logger.warning("sglang-consumer-gpu: %s; keeping SGLang's extend-attention tile", exc)
        return sglang_blocks
    dmodel, dpe, dv = sglang_blocks[:3]
    return (dmodel, dpe, dv, tile.block_m, tile.block_n, tile.num_warps)


def _build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    def get_block_sizes_for_extend_attention(Lq: int, Lv: int) -> Any:
        blocks = original(Lq, Lv)
        spec = current_spec()
        return blocks if spec is None else choose(spec, Lq, Lv, blocks)

    return get_block_sizes_for_extend_attention


def upstream_fixed(module: ModuleType) -> bool:
    """True when SGLang's own helper already fits the current GPU for every known head dim."""
    spec = current_spec()
    if spec is None:
        return False
    helper = getattr(module, ATTR)
    try:
        return all(sglang_tile_fits(spec, helper(lq, lv)) for lq, lv in HEAD_DIMS)
    except Exception:  # SGLang's helper changed shape: let the call-time check decide
        return False


def _next_power_of_2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length() if n > 1 else 1


def static_env(spec: GpuSpec) -> dict[str, Any]:
    """The module constants SGLang's helper reads, as they are on ``spec`` (an NVIDIA GPU)."""
    return {
        "_is_cuda": True,
        "_is_hip": False,
        "_is_gfx95": False,
        "_is_gfx1250": False,
        "CUDA_CAPABILITY": spec.capability,
        "triton": SimpleNamespace(next_power_of_2=_next_power_of_2),
    }


def upstream_fixed_from_source(spec: GpuSpec, source: str) -> bool | None:
    """:func:`upstream_fixed` for ``spec`` from the helper's source text alone (no
    SGLang import), with SGLang's CUDA module constants set as on that GPU.
    None when the helper needs anything else (then only a live import can tell)."""
    helper = function_from_source(source, ATTR, static_env(spec))
    if helper is None:
        return None
    try:
        return all(sglang_tile_fits(spec, helper(lq, lv)) for lq, lv in HEAD_DIMS)
    except Exception:
        return None


def needed_on(spec: GpuSpec) -> bool:
    """The ~99 KB class from Ampere on. sm_75 (T4, 64 KB) is left to SGLang: the
    shared-memory model is not a safe bound on Turing (``GpuSpec.is_ampere_or_newer``)."""
    return spec.is_low_smem and spec.is_ampere_or_newer


PATCH = Patch(
    name="attention-extend-blocks",
    seams=SEAMS,
    why="extend/dense-prefill attention tiles chosen by capability overflow ~99 KB shared memory "
    "(Required: 102400 / 106496, Hardware limit: 101376)",
    build=_build,
    upstream_fixed=upstream_fixed,
    needed_on=needed_on,
    upstream_fixed_from_source=upstream_fixed_from_source,
)
