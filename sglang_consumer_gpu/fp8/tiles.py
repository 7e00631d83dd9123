"""The weight-only kernel's tile: the fused-MoE heuristic for its operand widths, SGLang's BLOCK_SIZE_M.

SGLang looks its fused-MoE config up under ``dtype=fp8_w8a8`` whatever the GPU
(``get_config_dtype_str``), so the config a weight-only call arrives with was chosen for
SGLang's e4m3 kernel: 1-byte activations in shared memory, an e4m3 MMA loop. This kernel keeps
2-byte activations (and 1-byte weights) in shared memory, so a tile that fits the fp8_w8a8
budget can overflow here (128x256x128 at 3 stages: 98,304 B as fp8_w8a8, 131,072 B here), and
a tile timed for the e4m3 loop was never timed for this one. So from SGLang's config the kernel
keeps only ``BLOCK_SIZE_M`` -- ``moe_align_block_size`` padded every expert's rows to it, and
the routing buffers are laid out for it -- and takes the rest from the plugin's fused-MoE
heuristic asked for these operand widths (:data:`OPERANDS`), fitted to the GPU's budget by the
same shared-memory model (:func:`~sglang_consumer_gpu.moe.smem.estimate_shared`). A file tuned
for ``fp8_w8a8`` (on this GPU or another) therefore decides only the row block, and can never
make this kernel overflow.

Pure functions of a GpuSpec and the layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.smem import estimate_shared

#: The fused-MoE dtype key whose operand widths in shared memory are this kernel's: 2-byte
#: activations, 1-byte weights. It names SGLang's weight-only int8 kernel; only the widths
#: are shared (the heuristic and the shared-memory model read nothing else from it).
OPERANDS = "int8_w8a16"
#: Smallest tile edges the shrink goes down to (``tl.dot`` needs 16; 32 keeps K steps useful).
MIN_BLOCK_K = 32
MIN_BLOCK_N = 32


def sizing_shape(shape: MoeShape) -> MoeShape:
    """``shape`` (an fp8 layer) as the heuristic and the shared-memory model size this kernel's tiles."""
    return dataclasses.replace(shape, dtype=OPERANDS, per_channel_quant=False)


def shared_bound(config: dict[str, Any], shape: MoeShape, spec: GpuSpec) -> int:
    """Upper bound on the shared memory one block of the kernel needs with ``config``."""
    return estimate_shared(config, OPERANDS, shape.block_shape, spec.capability)


def _fits(config: dict[str, Any], shape: MoeShape, spec: GpuSpec) -> bool:
    return shared_bound(config, shape, spec) <= spec.smem_per_block_optin


def weight_only_config(M: int, shape: MoeShape, spec: GpuSpec, block_m: int | None = None) -> dict[str, int]:
    """The kernel's config for ``M`` tokens of the fp8 layer ``shape`` on ``spec``, with
    ``block_m`` (SGLang's ``BLOCK_SIZE_M``, which the routing buffers were aligned to) when
    given. Fitted by fewer stages, then a shorter K step, then a narrower N tile; the row
    block never changes."""
    cfg = dict(heuristic_config(max(int(M), 1), sizing_shape(shape), spec))
    if block_m is not None:
        cfg["BLOCK_SIZE_M"] = int(block_m)
    while not _fits(cfg, shape, spec):
        if cfg["num_stages"] > 2:
            cfg["num_stages"] -= 1
        elif cfg["BLOCK_SIZE_K"] > MIN_BLOCK_K:
            cfg["BLOCK_SIZE_K"] //= 2  # a power of two: still divides a block-quant group
        elif cfg["BLOCK_SIZE_N"] > MIN_BLOCK_N:
            cfg["BLOCK_SIZE_N"] //= 2
        else:
            break  # 256x32x32 at 2 stages: 17 KB, inside every budget this is asked for
    if cfg["BLOCK_SIZE_M"] * cfg["BLOCK_SIZE_N"] < 64 * 128:
        cfg["num_warps"] = min(cfg["num_warps"], 4)
    return cfg
