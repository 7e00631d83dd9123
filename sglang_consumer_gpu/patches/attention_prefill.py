"""Context (prefill) attention block size from the shared-memory budget.

What it changes: ``sglang.kernels.ops.attention.prefill_attention.
context_attention_fwd`` (the vision-encoder attention, ``VisionTritonAttention``).
Its tile is a local constant (``BLOCK = 128 if CUDA_CAPABILITY[0] > 8 else
64``) with nothing to patch, so the replacement calls SGLang's function while
the module's ``_fwd_kernel`` is wrapped in a launch filter for the duration of
the call. The filter reads the launch SGLang is about to make: if its
``BLOCK_M``/``BLOCK_N`` tile fits the GPU's opt-in shared memory by the
analytic model (:mod:`sglang_consumer_gpu.attention.model`, element size from
the query dtype) the launch goes through unchanged; otherwise BLOCK_M,
BLOCK_N and num_warps come from :func:`sglang_consumer_gpu.attention.
prefill_tile` and the grid's last axis is recomputed as
``cdiv(max_input_len, BLOCK_M)``, exactly as SGLang computes it.

Why: on sm_120 (RTX 5090, RTX PRO 6000) SGLang takes the Hopper tile
BLOCK=128. Compiled for sm_120 with the oracle (Triton 3.8), that needs
163,840 bytes for head dim 192/256 in bf16/fp16 and 131,072 bytes for head
dim 128 in fp32, against 101,376 available (``OutOfResources: Required:
131072``). bf16 head dim <= 128 fits (65,536) and is left alone.

Versions: SGLang 0.4.9 to 0.5.23 (:data:`SEAMS`): the launcher and its
kernel are the same in every covered release (``sm_scale`` became a
parameter in 0.5.11); the module is ``sglang.srt.layers.attention.triton_ops.
prefill_attention`` before 0.5.16 and ``sglang.kernels.ops.attention.
prefill_attention`` from 0.5.16. CI checks from every covered wheel that the
launch passes ``BLOCK_M``/``BLOCK_N``/``BLOCK_DMODEL``/``Lk`` as keywords; if
a release stops doing so, or the grid is not 3-D, the filter passes the
launch through untouched.

Upstream-fix detection: per launch. SGLang's own launch is kept whenever it
fits, so once SGLang sizes this tile for ~99 KB GPUs the filter never changes
anything (doctor still lists the patch as applied, with zero rewrites:
:data:`REWRITES`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.attention import prefill_tile, tile_fits
from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.patching.launch_filter import LaunchFilter, dtype_bytes, swap_kernel

MODULE = "sglang.kernels.ops.attention.prefill_attention"
ATTR = "context_attention_fwd"
KERNEL = "_fwd_kernel"
_OLD_MODULE = "sglang.srt.layers.attention.triton_ops.prefill_attention"
_PARAMS = ("q", "k", "v", "o", "b_start_loc", "b_seq_len", "max_input_len", "is_causal")
_LAUNCH = (KERNEL, ("BLOCK_M", "BLOCK_N", "BLOCK_DMODEL", "Lk", "num_warps", "num_stages"))
SEAMS = (
    Seam(">=0.4.9,<0.5.11", _OLD_MODULE, ATTR, _PARAMS, launches=_LAUNCH),
    Seam(">=0.5.11,<0.5.16", _OLD_MODULE, ATTR, (*_PARAMS, "sm_scale"), launches=_LAUNCH),
    Seam(">=0.5.16", MODULE, ATTR, (*_PARAMS, "sm_scale"), launches=_LAUNCH),
)

#: How many launches the filter rewrote in this process (doctor/tests read it).
REWRITES = [0]
_lock = threading.RLock()


def rewrite_launch(
    spec: Any, grid: Any, args: tuple[Any, ...], kwargs: dict[str, Any], max_input_len: int
) -> Any:
    """The (grid, kwargs) to launch with: SGLang's if its tile fits ``spec``, else ours (pure)."""
    try:
        block_m, block_n, dmodel = kwargs["BLOCK_M"], kwargs["BLOCK_N"], kwargs["BLOCK_DMODEL"]
        lk = int(kwargs["Lk"])
        elem = dtype_bytes(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return grid, kwargs
    if not isinstance(grid, tuple) or len(grid) != 3:
        return grid, kwargs
    if tile_fits(spec, block_m, block_n, dmodel, dmodel, elem, int(kwargs.get("num_stages", 1))):
        return grid, kwargs
    try:
        tile = prefill_tile(spec, lk, elem)
    except ValueError:
        return grid, kwargs
    new = dict(kwargs, BLOCK_M=tile.block_m, BLOCK_N=tile.block_n, num_warps=tile.num_warps, num_stages=1)
    return (grid[0], grid[1], -(-int(max_input_len) // tile.block_m)), new


def _build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    def context_attention_fwd(
        q: Any,
        k: Any,
        v: Any,
        o: Any,
        b_start_loc: Any,
        b_seq_len: Any,
        max_input_len: int,
        *args: Any,
        **kw: Any,
    ) -> Any:
        spec = current_spec()
        if spec is None:
            return original(q, k, v, o, b_start_loc, b_seq_len, max_input_len, *args, **kw)

        def filt(grid: Any, a: tuple[Any, ...], k2: dict[str, Any]) -> Any:
            new_grid, new_kw = rewrite_launch(spec, grid, a, k2, max_input_len)
            if new_kw is not k2:
                REWRITES[0] += 1
            return new_grid, new_kw

        with _lock, swap_kernel(module, KERNEL, LaunchFilter(getattr(module, KERNEL), filt)):
            return original(q, k, v, o, b_start_loc, b_seq_len, max_input_len, *args, **kw)

    return context_attention_fwd


def needed_on(spec: GpuSpec) -> bool:
    """The ~99 KB class from Ampere on. sm_75 (T4, 64 KB) is left to SGLang: the
    shared-memory model is not a safe bound on Turing (``GpuSpec.is_ampere_or_newer``)."""
    return spec.is_low_smem and spec.is_ampere_or_newer


PATCH = Patch(
    name="attention-prefill-blocks",
    seams=SEAMS,
    why="context (vision) attention uses BLOCK=128 on sm_120: Required 131072/163840, Hardware limit 101376",
    build=_build,
    needed_on=needed_on,
)
