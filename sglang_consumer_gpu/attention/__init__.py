"""Shared-memory-aware block sizes for SGLang's Triton attention kernels (pure functions of a GpuSpec)."""

from sglang_consumer_gpu.attention.choices import extend_tile, prefill_tile, tile_fits
from sglang_consumer_gpu.attention.model import AttentionTile, attention_smem_bytes, qk_tile_width

#: (Lq, Lv) pairs the plugin is checked for: common MHA dims, DeepSeek's
#: 192 (=128+64) / 128, Gemma's 256 and MLA's absorbed 576 (=512+64) / 512.
HEAD_DIMS: tuple[tuple[int, int], ...] = (
    (64, 64),
    (80, 80),
    (96, 96),
    (128, 128),
    (192, 128),
    (256, 256),
    (576, 512),
)
#: Head dims of the vision encoders that use context (prefill) attention.
PREFILL_HEAD_DIMS: tuple[int, ...] = (64, 72, 80, 96, 128, 256)

__all__ = [
    "HEAD_DIMS",
    "PREFILL_HEAD_DIMS",
    "AttentionTile",
    "attention_smem_bytes",
    "extend_tile",
    "prefill_tile",
    "qk_tile_width",
    "tile_fits",
]
