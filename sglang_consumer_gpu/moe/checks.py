"""``check`` provider: every fused-MoE config the plugin's lookup can return for a GPU.

* every entry of every bundled file for that GPU (harvested, tuned data);
* every entry of SGLang's own files for that GPU that the lookup accepts;
* the heuristic over the batch grid for the standard model shapes (and more
  shapes and the full grid with ``full=True``).

Each item compiles both GEMMs of the layer (up and down projection) for the
GPU's architecture with the compile-only oracle. Items are lazy: ``check``
runs them with a progress bar.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.heuristic import heuristic_config
from sglang_consumer_gpu.moe.lookup import find_configs
from sglang_consumer_gpu.moe.shape import STANDARD_BATCH_GRID, MoeShape
from sglang_consumer_gpu.moe.sources import BUNDLED_DIR, ConfigKey, sglang_config_root

#: Layers people run on consumer GPUs (N after the tensor parallelism that fits 24-96 GB).
STANDARD_SHAPES: tuple[MoeShape, ...] = (
    MoeShape(128, 768, 2048, 8),  # Qwen3-30B-A3B
    MoeShape(128, 768, 2048, 8, "fp8_w8a8"),
    MoeShape(128, 768, 2048, 8, "fp8_w8a8", (128, 128)),
    MoeShape(64, 1408, 2048, 6),  # DeepSeek-V2-Lite
    MoeShape(8, 7168, 4096, 2),  # Mixtral-8x7B TP2
    MoeShape(8, 7168, 4096, 2, "fp8_w8a8"),
)
FULL_EXTRA_SHAPES: tuple[MoeShape, ...] = (
    MoeShape(128, 1536, 4096, 8, "fp8_w8a8", (128, 128)),  # Qwen3-235B-A22B TP2
    MoeShape(512, 512, 2048, 10),  # Qwen3-Next-80B-A3B
    MoeShape(128, 704, 4096, 8, "fp8_w8a8"),  # GLM-4.5-Air TP2
    MoeShape(32, 2880, 2880, 4),  # gpt-oss-20b
    MoeShape(256, 64, 7168, 8, "int8_w8a8", per_channel_quant=True),  # DeepSeek-R1 channel-INT8 TP32
    MoeShape(8, 14336, 4096, 2),  # Mixtral-8x7B TP1
)
SHORT_GRID: tuple[int, ...] = (1, 16, 64, 256, 1024, 4096)
#: Hidden size for shapes known only from a file name (files carry no K).
FILE_K = 4096


def fp8_unsupported(spec: GpuSpec, shape: MoeShape) -> bool:
    """fp8_w8a8 runs through the Triton fused-MoE kernel only from sm_89 on: Triton
    refuses e4m3 before that ("type fp8e4nv not supported in this architecture"),
    so on sm_86 there is no such launch to check (SGLang uses other fp8 paths there)."""
    return shape.dtype == "fp8_w8a8" and spec.arch < 89


def _tile(cfg: dict[str, Any]) -> str:
    return (
        f"{cfg['BLOCK_SIZE_M']}x{cfg['BLOCK_SIZE_N']}x{cfg['BLOCK_SIZE_K']} g{cfg.get('GROUP_SIZE_M')} "
        f"w{cfg.get('num_warps', 4)} s{cfg.get('num_stages', 3)}"
    )


def _file_keys(spec: GpuSpec) -> list[ConfigKey]:
    """Keys of every bundled or SGLang file named for this GPU."""
    pat = re.compile(
        r"^E=(\d+),N=(\d+),device_name=(.+?)(?:,dtype=([a-z0-9_]+))?(?:,block_shape=\[(\d+), ?(\d+)\])?"
        r"(,per_channel_quant=True)?(_down)?\.json$"
    )
    roots = [BUNDLED_DIR]
    sg = sglang_config_root()
    if sg is not None:
        roots.extend(sorted(p for p in sg.iterdir() if p.is_dir()))
    keys: dict[ConfigKey, None] = {}
    for root in roots:
        for path in sorted(root.glob(f"*device_name={spec.config_device_name}*.json")):
            m = pat.match(path.name)
            if not m or m.group(3) != spec.config_device_name:
                continue
            keys[
                ConfigKey(
                    int(m.group(1)),
                    int(m.group(2)),
                    m.group(4),
                    int(m.group(5) or 0),
                    int(m.group(6) or 0),
                    bool(m.group(7)),
                    bool(m.group(8)),
                )
            ] = None
    return list(keys)


def _item(spec: GpuSpec, shape: MoeShape, M: int, cfg: dict[str, Any], what: str) -> Any:
    from sglang_consumer_gpu.moe.oracle_bridge import resources_both
    from sglang_consumer_gpu.oracle.checks import CheckItem

    kw = {k: v for k, v in cfg.items() if k != "USE_TMA"}
    return CheckItem(
        area="moe",
        kernel="fused_moe_kernel",
        config=f"{what} {shape.label} M={M} {_tile(cfg)}",
        run=lambda: resources_both(spec, shape, M, kw),
    )


def check_items(spec: GpuSpec, *, full: bool = False) -> Iterator[Any]:
    """Lazy check items for every config the lookup can hand SGLang on ``spec``."""
    seen: set[tuple[Any, ...]] = set()

    def once(shape: MoeShape, cfg: dict[str, Any]) -> bool:
        key = (shape.dtype, shape.block_shape, shape.per_channel_quant, tuple(sorted(cfg.items())))
        if key in seen:  # shared memory depends on the tile and dtype, not on E/N/K/M
            return False
        seen.add(key)
        return True

    for key in _file_keys(spec):
        found = find_configs(key, spec)
        if not found.configs:
            continue
        shape = MoeShape(
            key.E, key.N, FILE_K, min(8, key.E), key.dtype, key.block_shape, key.per_channel_quant
        )
        if fp8_unsupported(spec, shape):
            continue
        for M, cfg in found.configs.items():
            if full or once(shape, cfg):
                yield _item(spec, shape, M, cfg, f"{found.source} file")
    shapes = STANDARD_SHAPES + (FULL_EXTRA_SHAPES if full else ())
    for shape in shapes:
        if fp8_unsupported(spec, shape):
            continue
        for M in STANDARD_BATCH_GRID if full else SHORT_GRID:
            cfg = heuristic_config(M, shape, spec)
            if full or once(shape, cfg):
                yield _item(spec, shape, M, cfg, "heuristic")
