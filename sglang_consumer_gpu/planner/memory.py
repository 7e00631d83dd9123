"""GPU memory of a launch, per GPU: pure arithmetic on a model description, a
:class:`~sglang_consumer_gpu.models.launch.Launch` and a GPU's memory size.

What SGLang computes itself (its default ``mem_fraction_static``, the CUDA-graph
and chunked-prefill sizes, the pipeline-stage layer split) arrives in the
``Launch`` from SGLang's own functions. What SGLang has no function for is
modelled here:

- weight bytes per GPU, from the config and the quantization, sharded as
  SGLang 0.5.23 shards them (attention over the attention-TP group, with
  KV heads replicated when there are fewer than ranks; dense MLPs over TP;
  experts over EP and their width over TP/EP; the router and MLA's
  ``q_a``/``kv_a`` projections replicated; the embedding over the
  attention-TP group under DP attention; MLA keeps bf16 copies of
  ``kv_b_proj`` (``w_kc``/``w_vc``) next to it);
- the KV cache bytes per token (SGLang's ``_compute_cell_size`` rule for
  MHA/GQA and MLA), and the pool that SGLang's profiling formula
  (``pre_load * mem_fraction_static - weights``) leaves;
- the memory in use before the weights load (CUDA context, NCCL), taken as
  :data:`PRE_LOAD_OVERHEAD_GIB`: not modelled, an assumption;
- the fused-MoE intermediate buffers of one chunked-prefill batch.

Not modelled: sliding-window/hybrid pools, speculative-decoding draft models,
LoRA, multimodal encoders, DeepEP buffers, JIT DeepGEMM workspaces, allocator
fragmentation. Each result says which numbers are SGLang's and which are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sglang_consumer_gpu.models.description import BF16_BYTES, ModelDescription, Quantization
from sglang_consumer_gpu.models.launch import Launch

GIB = 1024**3
MIB = 1024**2
#: Memory in use on a GPU before SGLang loads weights (CUDA context, torch, NCCL
#: communicators). SGLang measures it; the planner cannot, so it assumes this.
PRE_LOAD_OVERHEAD_GIB = 1.0
#: SGLang pads the vocabulary of embeddings and LM heads to a multiple of this (vocab_parallel_embedding.py).
VOCAB_PAD = 64


@dataclass(frozen=True)
class Part:
    """One line of the weights arithmetic (per GPU)."""

    name: str
    bytes: float
    how: str  # the formula, for --explain


@dataclass(frozen=True)
class StageMemory:
    """Memory of one GPU of one pipeline stage."""

    stage: int
    layers: tuple[int, int]  # [start, end)
    parts: tuple[Part, ...]
    kv_bytes_per_token: float
    kv_how: str

    @property
    def weights(self) -> float:
        return sum(p.bytes for p in self.parts)


@dataclass(frozen=True)
class MemoryPlan:
    """The memory verdict inputs for one launch on one GPU kind."""

    gpu_bytes: float
    pre_load_bytes: float
    fraction: float
    default_fraction: float
    stages: tuple[StageMemory, ...]
    worst: StageMemory  # the stage with the fewest KV tokens
    kv_pool_bytes: float  # pre_load * fraction - weights, on the worst stage
    kv_tokens: int  # SGLang's max_total_num_tokens as the planner predicts it
    max_running_requests: int
    headroom_bytes: float  # pre_load * (1 - fraction): what is left for activations and graphs
    sglang_reserve_bytes: float  # what SGLang's own default sets aside: gpu_mem * (1 - default fraction)
    moe_activation_bytes: float  # fused-MoE intermediate buffers of one chunked-prefill batch
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu_gib": self.gpu_bytes / GIB,
            "pre_load_gib": self.pre_load_bytes / GIB,
            "mem_fraction_static": self.fraction,
            "sglang_default_mem_fraction_static": self.default_fraction,
            "weights_gib_per_gpu": self.worst.weights / GIB,
            "weights_parts_gib": {p.name: p.bytes / GIB for p in self.worst.parts},
            "kv_bytes_per_token": self.worst.kv_bytes_per_token,
            "kv_pool_gib": self.kv_pool_bytes / GIB,
            "max_total_num_tokens": self.kv_tokens,
            "max_running_requests": self.max_running_requests,
            "headroom_gib": self.headroom_bytes / GIB,
            "sglang_reserve_gib": self.sglang_reserve_bytes / GIB,
            "moe_activation_gib": self.moe_activation_bytes / GIB,
            "worst_stage": self.worst.stage,
            "stages": [
                {"stage": s.stage, "layers": list(s.layers), "weights_gib": s.weights / GIB}
                for s in self.stages
            ],
            "notes": list(self.notes),
        }


# --- quantized bytes ---------------------------------------------------------


def _unquantized(q: Quantization, part: str, layer: int | None) -> bool:
    """Whether the checkpoint leaves ``part`` of ``layer`` in 16 bits (its ignore list)."""
    keys = {
        "attention": ("self_attn", ".attn", "attention"),
        "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "mlp.gate_up_proj", "shared_expert"),
        "experts": ("experts",),
    }[part]
    for pat in q.unquantized:
        if not any(k in pat for k in keys):
            continue
        where = pat.split("layers.", 1)
        if len(where) == 1:
            return True
        idx = where[1].split(".", 1)[0]
        if layer is not None and idx.isdigit() and int(idx) == layer:
            return True
    return False


def matrix_bytes(rows: int, cols: int, q: Quantization, *, quantized: bool = True, count: int = 1) -> float:
    """Bytes of ``count`` weight matrices ``rows x cols`` (rows = output features), with scales."""
    if not quantized or not q.quantized:
        return count * rows * cols * BF16_BYTES
    body = rows * cols * q.weight_bits / 8
    if q.block:
        scales = math.ceil(rows / q.block[0]) * math.ceil(cols / q.block[1]) * 4
    elif q.group_size:
        scales = (
            rows
            * math.ceil(cols / q.group_size)
            * (BF16_BYTES + (q.weight_bits / 8 if q.method == "awq" else 0))
        )
    elif q.per_channel:
        scales = rows * 4
    else:
        scales = 4
    return count * (body + scales)


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


# --- weights -------------------------------------------------------------------


def _attention_parts(desc: ModelDescription, launch: Launch, layers: list[int]) -> list[Part]:
    a, q, h = desc.attention, desc.quantization, desc.hidden
    atp = launch.attn_tp
    n = len(layers)
    if n == 0:
        return []
    quant = [not _unquantized(q, "attention", i) for i in layers]
    nq = sum(quant)
    heads = a.q_heads // atp if a.q_heads >= atp else 1

    def lin(rows: int, cols: int) -> float:
        return matrix_bytes(rows, cols, q, count=nq) + matrix_bytes(
            rows, cols, q, quantized=False, count=n - nq
        )

    if a.is_mla:
        lora, kv_lora = a.q_lora_rank, a.kv_lora_rank or 0
        rope, nope = a.qk_rope_head_dim or 0, a.qk_nope_head_dim or 0
        parts = []
        if lora:
            replicated = lin(lora + kv_lora + rope, h)
            q_b = lin(heads * a.head_dim, lora)
            how_a = f"q_a+kv_a ({lora}+{kv_lora}+{rope}) x {h}, replicated"
        else:
            replicated = lin(kv_lora + rope, h)
            q_b = lin(heads * a.head_dim, h)
            how_a = f"kv_a ({kv_lora}+{rope}) x {h}, replicated"
        kv_b = lin(heads * (nope + a.v_head_dim), kv_lora)
        o = lin(h, heads * a.v_head_dim)
        absorbed = n * kv_lora * heads * (nope + a.v_head_dim) * BF16_BYTES
        parts.append(
            Part(
                "attention (MLA)",
                replicated + q_b + kv_b + o,
                f"{n} layers x [{how_a}; q_b, kv_b, o over {heads} of {a.q_heads} heads]",
            )
        )
        parts.append(
            Part(
                "MLA w_kc/w_vc (bf16 copies of kv_b)",
                absorbed,
                f"{n} x {kv_lora} x {heads} heads x ({nope}+{a.v_head_dim}) x 2 B",
            )
        )
        return parts
    kv_local = max(1, a.kv_heads // atp)
    qkv = lin(heads * a.head_dim + 2 * kv_local * a.head_dim, h)
    o = lin(h, heads * a.v_head_dim)
    return [
        Part(
            "attention",
            qkv + o,
            f"{n} layers x [qkv ({heads}+2x{kv_local}) heads x {a.head_dim} x {h}, o {heads} x {a.v_head_dim} x {h}]"
            f" (attention TP {atp})",
        )
    ]


def _mlp_parts(desc: ModelDescription, launch: Launch, layers: list[int]) -> list[Part]:
    q, h = desc.quantization, desc.hidden
    moe_set = set(desc.moe_layers)
    dense = [i for i in layers if i not in moe_set]
    sparse = [i for i in layers if i in moe_set]
    parts: list[Part] = []
    dense_tp = launch.moe_dense_tp or launch.tp
    if dense and desc.dense_intermediate:
        w = desc.dense_intermediate // dense_tp
        nq = sum(not _unquantized(q, "mlp", i) for i in dense)
        b = matrix_bytes(2 * w, h, q, count=nq) + matrix_bytes(h, w, q, count=nq)
        b += (len(dense) - nq) * 3 * w * h * BF16_BYTES
        parts.append(
            Part(
                "dense MLP",
                b,
                f"{len(dense)} layers x 3 x {h} x {w} (intermediate {desc.dense_intermediate}/TP{dense_tp})",
            )
        )
    if sparse and desc.moe is not None:
        m = desc.moe
        e_local, n_local = m.experts // launch.ep, m.intermediate // launch.moe_tp
        nq = sum(not _unquantized(q, "experts", i) for i in sparse)
        one = matrix_bytes(2 * n_local, h, q) + matrix_bytes(h, n_local, q)
        b = e_local * (nq * one + (len(sparse) - nq) * 3 * n_local * h * BF16_BYTES)
        parts.append(
            Part(
                "experts",
                b,
                f"{len(sparse)} layers x {e_local} experts (E {m.experts}/EP{launch.ep}) x 3 x {h} x {n_local}"
                f" (N {m.intermediate}/TP{launch.moe_tp}), {q.label()}",
            )
        )
        router = len(sparse) * m.experts * h * BF16_BYTES
        parts.append(Part("router", router, f"{len(sparse)} x {m.experts} x {h} x 2 B, replicated"))
        if m.shared_intermediate:
            w = m.shared_intermediate // launch.tp
            sb = matrix_bytes(2 * w, h, q, count=len(sparse)) + matrix_bytes(h, w, q, count=len(sparse))
            parts.append(
                Part(
                    "shared experts",
                    sb,
                    f"{len(sparse)} x 3 x {h} x {w} ({m.shared_intermediate}/TP{launch.tp})",
                )
            )
    return parts


def stage_memory(desc: ModelDescription, launch: Launch, stage: int) -> StageMemory:
    """Weights and KV bytes/token of one GPU of pipeline stage ``stage``."""
    start, end = launch.pp_layers[stage] if launch.pp_layers else (0, desc.layers)
    layers = list(range(start, end))
    parts: list[Part] = []
    shards = launch.attn_tp if launch.dp_attention else launch.tp
    vocab = _pad(desc.vocab, VOCAB_PAD)
    last = stage == max(launch.pp - 1, 0)
    if stage == 0:
        parts.append(
            Part(
                "embedding",
                vocab * desc.hidden * BF16_BYTES / shards,
                f"{vocab} x {desc.hidden} x 2 B / {shards}",
            )
        )
    if last and not (desc.tie_word_embeddings and launch.pp == 1):
        lm = launch.attn_tp if launch.enable_dp_lm_head else launch.tp
        parts.append(
            Part("lm_head", vocab * desc.hidden * BF16_BYTES / lm, f"{vocab} x {desc.hidden} x 2 B / {lm}")
        )
    parts += _attention_parts(desc, launch, layers)
    parts += _mlp_parts(desc, launch, layers)
    parts.append(Part("norms", len(layers) * 2 * desc.hidden * BF16_BYTES, "2 RMSNorms per layer"))
    a = desc.attention
    if a.is_mla:
        per_layer = ((a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)) * launch.kv_bytes
        how = f"{len(layers)} layers x ({a.kv_lora_rank}+{a.qk_rope_head_dim}) x {launch.kv_bytes} B (MLA latent, not sharded)"
    else:
        kv_local = max(1, a.kv_heads // launch.attn_tp)
        per_layer = kv_local * (a.head_dim + a.v_head_dim) * launch.kv_bytes
        how = f"{len(layers)} layers x {kv_local} KV heads x ({a.head_dim}+{a.v_head_dim}) x {launch.kv_bytes} B"
    return StageMemory(stage, (start, end), tuple(parts), per_layer * len(layers), how)


def max_running_requests(tokens: int, context_len: int, requested: int | None, attn_dp: int) -> int:
    """SGLang's ``KVCacheConfigurator.resolve_max_num_reqs`` (0.5.23), without the Mamba cap."""
    estimated = max(min(int(tokens / max(context_len, 1) * 512), 4096), 2048)
    if requested is not None:
        return min(max(1, requested // attn_dp), tokens // 2)
    return min(estimated, tokens // 2)


def moe_activation_bytes(desc: ModelDescription, launch: Launch) -> float:
    """fused_experts' three intermediate caches for one chunked-prefill batch (bf16):
    ``M*topk x 2N``, ``M*topk x N`` and ``M x topk x K``. Under DP attention the MoE
    sees the tokens of every DP rank."""
    if desc.moe is None or not desc.moe_layers:
        return 0.0
    m = launch.chunked_prefill_size * launch.attn_dp
    n = desc.moe.intermediate // launch.moe_tp
    k = desc.moe.topk
    return m * k * (3 * n + desc.hidden) * BF16_BYTES


def plan_memory(desc: ModelDescription, launch: Launch, gpu_bytes: float) -> MemoryPlan:
    """Every stage's memory, and the KV pool SGLang would size on the tightest one."""
    pre_load = gpu_bytes - PRE_LOAD_OVERHEAD_GIB * GIB
    stages = tuple(stage_memory(desc, launch, s) for s in range(max(launch.pp, 1)))
    frac = launch.mem_fraction_static

    def pool(s: StageMemory) -> float:
        return pre_load * frac - s.weights

    def tokens(s: StageMemory) -> int:
        if s.kv_bytes_per_token <= 0:
            return 0
        t = int(max(pool(s), 0) // s.kv_bytes_per_token)
        if launch.max_total_tokens:
            t = min(t, launch.max_total_tokens)
        return t // launch.page_size * launch.page_size

    worst = min(stages, key=lambda s: (tokens(s), -s.weights))
    kv = min(tokens(s) for s in stages)  # SGLang takes the MIN over pipeline ranks
    notes = []
    if desc.attention.sliding_window:
        notes.append("sliding-window layers: SGLang may use a hybrid SWA pool; the planner sizes a full pool")
    if desc.nextn_layers:
        notes.append(
            f"{desc.nextn_layers} MTP layer(s) in the checkpoint are loaded only with speculative decoding; not counted"
        )
    reserve = launch.gpu_mem_mib * MIB * (1 - launch.default_mem_fraction_static)
    return MemoryPlan(
        gpu_bytes=gpu_bytes,
        pre_load_bytes=pre_load,
        fraction=frac,
        default_fraction=launch.default_mem_fraction_static,
        stages=stages,
        worst=worst,
        kv_pool_bytes=pool(worst),
        kv_tokens=kv,
        max_running_requests=max_running_requests(
            kv, launch.context_len, launch.max_running_requests, launch.attn_dp
        ),
        headroom_bytes=pre_load * (1 - frac),
        sglang_reserve_bytes=reserve,
        moe_activation_bytes=moe_activation_bytes(desc, launch),
        notes=tuple(notes),
    )
