"""(N, K) of W8A8-INT8 linear layers in real models, for correctness runs, tuning
and benchmarks. N = output features on one GPU, K = input features (the
tensor-parallel split applied: column-parallel layers divide N, row-parallel
layers divide K)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    model: str
    name: str
    n: int
    k: int

    @property
    def label(self) -> str:
        return f"{self.model} {self.name} N={self.n} K={self.k}"


def _llama_like(
    model: str, hidden: int, inter: int, heads: int, kv_heads: int, head_dim: int, tp: int
) -> list[Layer]:
    qkv = (heads + 2 * kv_heads) * head_dim
    return [
        Layer(model, "qkv_proj", qkv // tp, hidden),
        Layer(model, "o_proj", hidden, heads * head_dim // tp),
        Layer(model, "gate_up_proj", 2 * inter // tp, hidden),
        Layer(model, "down_proj", hidden, inter // tp),
    ]


def _deepseek_r1(tp: int) -> list[Layer]:
    """DeepSeek-R1-Channel-INT8's dense (non-expert) linears: MLA projections,
    the three dense MLP layers. Experts go through fused MoE, not this GEMM."""
    model = f"DeepSeek-R1 TP{tp}"
    hidden, heads = 7168, 128
    return [
        Layer(model, "fused_qkv_a_proj", 1536 + 576, hidden),  # replicated
        Layer(model, "q_b_proj", heads * 192 // tp, 1536),
        Layer(model, "kv_b_proj", heads * 256 // tp, 512),
        Layer(model, "o_proj", hidden, heads * 128 // tp),
        Layer(model, "dense gate_up_proj", 2 * 18432 // tp, hidden),
        Layer(model, "dense down_proj", hidden, 18432 // tp),
    ]


LAYERS: tuple[Layer, ...] = (
    *_llama_like("Llama-3-8B TP1", 4096, 14336, 32, 8, 128, 1),
    *_llama_like("Llama-3-70B TP4", 8192, 28672, 64, 8, 128, 4),
    *_llama_like("Qwen2.5-7B TP1", 3584, 18944, 28, 4, 128, 1),
    *_deepseek_r1(8),
    *_deepseek_r1(32),
)

#: Token counts (M): decode batches to long prefills.
M_VALUES: tuple[int, ...] = (1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def unique_nk() -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}
    for layer in LAYERS:
        seen.setdefault((layer.n, layer.k), None)
    return list(seen)
