"""The MoE problem a config is chosen for, in SGLang's own vocabulary.

``N`` is the intermediate size per expert after tensor parallelism (the ``N``
in SGLang's config file names, ``w2.shape[2]``); ``K`` is the hidden size.
The first GEMM multiplies by ``w1`` of shape ``[E, 2N, K]``, the second by
``w2`` of shape ``[E, K, N]``; SGLang uses one config for both.
"""

from __future__ import annotations

from dataclasses import dataclass

#: SGLang's config dtype strings (``get_config_dtype_str``); None = bf16/fp16.
CONFIG_DTYPES: tuple[str | None, ...] = (
    None,
    "fp8_w8a8",
    "int8_w8a8",
    "int8_w8a16",
    "int4_w4a16",
    "float32",
)

#: Dtypes whose GEMM runs in ``fused_moe_kernel`` with the operand widths below.
#: int8_w8a16/int4_w4a16 with a group size run ``fused_moe_kernel_gptq_awq``.
_OPERAND_BYTES: dict[str | None, tuple[float, float]] = {
    None: (2, 2),
    "float32": (2, 2),  # SGLang computes float32 MoE with 16-bit configs
    "fp8_w8a8": (1, 1),
    "int8_w8a8": (1, 1),
    "int8_w8a16": (2, 1),
    "int4_w4a16": (2, 0.5),
}

_ALIASES = {
    "": None,
    "none": None,
    "bf16": None,
    "bfloat16": None,
    "fp16": None,
    "float16": None,
    "half": None,
    "auto": None,
    "fp8": "fp8_w8a8",
    "int8": "int8_w8a8",
    "w8a8_int8": "int8_w8a8",
    "w8a8_fp8": "fp8_w8a8",
}


def parse_dtype(value: str | None) -> str | None:
    """User-facing dtype name -> SGLang's config dtype string (None for 16-bit)."""
    if value is None:
        return None
    key = value.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    if key in CONFIG_DTYPES:
        return key
    raise ValueError(
        f"unknown MoE dtype {value!r}; use bf16, fp16, fp8_w8a8, int8_w8a8, int8_w8a16 or int4_w4a16"
    )


def operand_bytes(dtype: str | None) -> tuple[float, float]:
    """Bytes per element of the A (activations) and B (weights) tiles in shared memory."""
    try:
        return _OPERAND_BYTES[dtype]
    except KeyError:
        raise ValueError(f"unknown MoE config dtype {dtype!r}") from None


def dtype_label(dtype: str | None) -> str:
    return dtype or "bf16"


@dataclass(frozen=True)
class MoeShape:
    """One fused-MoE layer as the config lookup sees it."""

    E: int
    N: int
    K: int
    topk: int
    dtype: str | None = None
    block_shape: tuple[int, int] | None = None
    per_channel_quant: bool = False

    def __post_init__(self) -> None:
        for name in ("E", "N", "K", "topk"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.topk > self.E:
            raise ValueError(f"topk ({self.topk}) cannot exceed the number of experts E ({self.E})")
        operand_bytes(self.dtype)
        if self.block_shape is not None:
            bn, bk = self.block_shape
            if bn <= 0 or bk <= 0:
                raise ValueError(f"block_shape must be two positive ints, got {self.block_shape!r}")

    @property
    def label(self) -> str:
        bs = f",block={list(self.block_shape)}" if self.block_shape else ""
        pc = ",per_channel" if self.per_channel_quant else ""
        return f"E={self.E},N={self.N},K={self.K},topk={self.topk},{dtype_label(self.dtype)}{bs}{pc}"


#: The batch sizes (tokens per forward) SGLang's tuning script writes into a
#: config file; the CLI and the checks walk this grid.
STANDARD_BATCH_GRID: tuple[int, ...] = tuple(2**i for i in range(13))  # 1 .. 4096
