"""A model as the planner, the MoE tools and the benchmarks see it: plain data.

Nothing here reads files or imports SGLang; :mod:`.config` builds a
:class:`ModelDescription` from a ``config.json`` dict, :mod:`.resolve` finds
that file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Bytes per element of a 16-bit model's weights and activations.
BF16_BYTES = 2


@dataclass(frozen=True)
class Attention:
    """Attention dimensions of one layer (all layers are alike in the models covered).

    ``kind`` is ``"mla"`` (DeepSeek-style multi-head latent attention, with
    the ``*_lora_rank`` / ``qk_*_head_dim`` fields set) or ``"mha"`` (which
    includes grouped-query attention: ``kv_heads < q_heads``).
    """

    kind: str
    q_heads: int
    kv_heads: int
    head_dim: int  # q/k head dim (MLA: qk_nope + qk_rope)
    v_head_dim: int
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    sliding_window: int | None = None

    @property
    def is_mla(self) -> bool:
        return self.kind == "mla"


@dataclass(frozen=True)
class Moe:
    """The routed-expert part of a MoE model."""

    experts: int  # routed experts E
    topk: int
    intermediate: int  # per-expert intermediate size (SGLang's N before TP)
    shared_intermediate: int = 0  # total intermediate size of the shared expert(s), 0 if none
    shared_experts: int = 0


@dataclass(frozen=True)
class Quantization:
    """What the checkpoint's ``quantization_config`` (or ``--quantization``) means for weights.

    ``moe_dtype`` is SGLang's fused-MoE config dtype string (``fp8_w8a8``,
    ``int8_w8a8``, ``int4_w4a16``, ...; None for 16-bit experts), or
    ``"other"`` when the experts do not run SGLang's Triton fused-MoE kernel
    (e.g. MXFP4). ``unquantized`` holds the checkpoint's
    ``ignored_layers``/``modules_to_not_convert``/``ignore`` patterns.
    """

    method: str | None = None
    weight_bits: float = 16
    block: tuple[int, int] | None = None  # (block_n, block_k) of block-wise scales
    per_channel: bool = False
    group_size: int | None = None  # weight-only group quantization
    activations: str | None = None  # "dynamic", "static" or None (weight-only / unquantized)
    moe_dtype: str | None = None
    unquantized: tuple[str, ...] = ()
    unread_fields: tuple[str, ...] = ()  # fields present that the planner does not interpret
    source: str = "none"  # "config.json", "--quantization", "none"

    @property
    def quantized(self) -> bool:
        return self.method is not None

    def label(self) -> str:
        if not self.quantized:
            return "unquantized (16-bit)"
        parts = [str(self.method)]
        if self.block:
            parts.append(f"block {self.block[0]}x{self.block[1]}")
        elif self.per_channel:
            parts.append("per-channel")
        if self.group_size:
            parts.append(f"group {self.group_size}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ModelDescription:
    """A decoder-only model, as much of it as memory and kernel planning needs."""

    name: str  # what the user typed, or the directory name
    architecture: str
    model_type: str
    layers: int
    hidden: int
    vocab: int
    tie_word_embeddings: bool
    torch_dtype: str
    attention: Attention
    dense_intermediate: int  # MLP width of dense (non-MoE) layers
    moe: Moe | None
    moe_layers: tuple[int, ...]  # indices of MoE layers; the rest are dense
    quantization: Quantization
    max_position_embeddings: int | None = None
    nextn_layers: int = 0  # MTP / next-token-prediction layers (loaded only for speculative decoding)
    config_path: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def is_moe(self) -> bool:
        return self.moe is not None and bool(self.moe_layers)

    @property
    def activation_dtype(self) -> str:
        """The dtype the tools run its activations in: float16 for a float16 checkpoint, else bfloat16.
        (SGLang's ``--dtype auto`` runs a float32 checkpoint, rare for these models, in float16
        except Gemma's; the tools do not follow that.)"""
        return "float16" if str(self.torch_dtype).lower() in ("float16", "fp16", "half") else "bfloat16"

    @property
    def dense_layers(self) -> tuple[int, ...]:
        moe = set(self.moe_layers)
        return tuple(i for i in range(self.layers) if i not in moe)

    def with_quantization(self, quantization: Quantization) -> ModelDescription:
        from dataclasses import replace

        return replace(self, quantization=quantization)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["moe_layers"] = len(self.moe_layers)
        d["dense_layers"] = len(self.dense_layers)
        return d
