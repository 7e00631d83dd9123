"""What makes a launch impossible or risky before any kernel runs. Pure.

Each check names the SGLang 0.5.23 code that would refuse the launch and
quotes its message where SGLang has one, so the user recognises it.
"""

from __future__ import annotations

from sglang_consumer_gpu.families.base import FAIL, INFO, RISK, Finding
from sglang_consumer_gpu.fp8.linear import MARLIN, REFUSED, linear_path
from sglang_consumer_gpu.fp8.route import weight_only_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.description import ModelDescription
from sglang_consumer_gpu.models.launch import Launch


def fp8_moe_before_sm89(spec: GpuSpec) -> str:
    """What SGLang 0.5.23 alone does with fp8 experts on a GPU without e4m3, and what the plugin does."""
    alone = (
        f"{spec.name} ({spec.arch_name}) cannot run SGLang's fp8_w8a8 fused MoE: Triton has no fp8 e4m3 before "
        'sm_89 ("type fp8e4nv not supported in this architecture"), and SGLang 0.5.23 runs fp8 experts only '
        "through that kernel (Fp8MoEMethod's Triton runner, use_fp8_w8a8=True), so SGLang alone fails at the "
        "first MoE forward (CUDA-graph capture)"
    )
    if weight_only_gpu(spec):
        return f"{alone}; the plugin runs fp8 experts through its weight-only FP8 kernel instead"
    return alone


def _layout(desc: ModelDescription, launch: Launch) -> list[Finding]:
    out: list[Finding] = []
    a = desc.attention
    if launch.dp_attention and launch.tp % launch.dp:
        out.append(
            Finding(FAIL, "layout", f"--dp {launch.dp} must divide --tp {launch.tp} with DP attention")
        )
        return out
    if a.q_heads % launch.attn_tp:
        out.append(
            Finding(
                FAIL,
                "layout",
                f"{a.q_heads} attention heads are not divisible by the attention TP size {launch.attn_tp}",
            )
        )
    if not a.is_mla and a.kv_heads < launch.attn_tp and launch.attn_tp % a.kv_heads:
        out.append(
            Finding(
                FAIL,
                "layout",
                f"{a.kv_heads} KV heads cannot be replicated evenly over attention TP {launch.attn_tp}",
            )
        )
    if desc.moe is not None and desc.moe_layers:
        if launch.tp % launch.ep:
            out.append(Finding(FAIL, "layout", f"--ep {launch.ep} must divide --tp {launch.tp}"))
        elif desc.moe.experts % launch.ep:
            out.append(
                Finding(FAIL, "layout", f"{desc.moe.experts} experts are not divisible by --ep {launch.ep}")
            )
        elif desc.moe.intermediate % launch.moe_tp:
            out.append(
                Finding(
                    FAIL,
                    "layout",
                    f"MoE intermediate size {desc.moe.intermediate} is not divisible by the MoE TP size "
                    f"{launch.moe_tp} (tp/ep)",
                )
            )
    if launch.pp > desc.layers:
        out.append(Finding(FAIL, "layout", f"--pp {launch.pp} exceeds the {desc.layers} layers"))
    return out


def _linears(desc: ModelDescription, launch: Launch) -> list[tuple[str, str, int, list[int]]]:
    """(name, kind, input size per partition, output partition sizes) of the TP-sharded
    linear layers SGLang's block-quant checks look at (``validate_block_quant_shapes``)."""
    a, h, atp, tp = desc.attention, desc.hidden, launch.attn_tp, launch.tp
    heads = a.q_heads // atp if a.q_heads % atp == 0 else 0
    out: list[tuple[str, str, int, list[int]]] = []
    if atp > 1 and heads:
        if a.is_mla:
            if a.q_lora_rank:
                out.append(("q_b_proj", "column", a.q_lora_rank, [heads * a.head_dim]))
            out.append(
                (
                    "kv_b_proj",
                    "column",
                    a.kv_lora_rank or 0,
                    [heads * ((a.qk_nope_head_dim or 0) + a.v_head_dim)],
                )
            )
        else:
            kv = max(1, a.kv_heads // atp)
            out.append(("qkv_proj", "column", h, [heads * a.head_dim, kv * a.head_dim, kv * a.head_dim]))
        out.append(("o_proj", "row", heads * a.v_head_dim, [h]))
    dense_tp = launch.moe_dense_tp or tp
    if (
        desc.dense_layers
        and desc.dense_intermediate
        and dense_tp > 1
        and desc.dense_intermediate % dense_tp == 0
    ):
        w = desc.dense_intermediate // dense_tp
        out += [("mlp.gate_up_proj", "column", h, [w, w]), ("mlp.down_proj", "row", w, [h])]
    if (
        desc.moe is not None
        and desc.moe.shared_intermediate
        and tp > 1
        and desc.moe.shared_intermediate % tp == 0
    ):
        w = desc.moe.shared_intermediate // tp
        out += [
            ("shared_experts.gate_up_proj", "column", h, [w, w]),
            ("shared_experts.down_proj", "row", w, [h]),
        ]
    return out


def _block_quant(desc: ModelDescription, launch: Launch) -> list[Finding]:
    q = desc.quantization
    if not q.block:
        return []
    bn, bk = q.block
    out: list[Finding] = []
    for name, kind, k_in, n_outs in _linears(desc, launch):
        if kind == "row" and k_in % bk:
            out.append(
                Finding(
                    FAIL,
                    "quantization",
                    f'{name}: SGLang raises "Weight input_size_per_partition = {k_in} is not divisible by '
                    f'weight quantization block_k = {bk}."',
                )
            )
        if kind == "column":
            bad = [n for n in n_outs if n % bn]
            if bad:
                out.append(
                    Finding(
                        FAIL,
                        "quantization",
                        f'{name}: SGLang raises "Weight output_partition_size = {bad[0]} is not divisible by '
                        f'weight quantization block_n = {bn}."',
                    )
                )
    m = desc.moe
    if (
        m is not None
        and desc.moe_layers
        and launch.tp % launch.ep == 0
        and m.intermediate % launch.moe_tp == 0
    ):
        n = m.intermediate // launch.moe_tp
        if n % bn:
            out.append(
                Finding(
                    FAIL,
                    "quantization",
                    f"experts: SGLang raises \"The output_size of gate's and up's weight = {n} is not divisible by "
                    f'weight quantization block_n = {bn}." (MoE N = {m.intermediate}/TP{launch.moe_tp})',
                )
            )
        elif launch.moe_tp > 1 and n % bk:
            out.append(
                Finding(
                    FAIL,
                    "quantization",
                    f"experts: SGLang raises \"The input_size of down's weight = {n} is not divisible by "
                    f'weight quantization block_k = {bk}."',
                )
            )
    return out


def _architecture(spec: GpuSpec, desc: ModelDescription, launch: Launch) -> list[Finding]:
    out: list[Finding] = []
    q = desc.quantization
    cap = spec.capability
    if q.moe_dtype == "fp8_w8a8":
        linear = linear_path(spec, q.method)
        if linear.kind in (REFUSED, MARLIN):
            out.append(Finding(FAIL if linear.kind == REFUSED else INFO, "architecture", linear.why))
        if linear.kind == MARLIN and desc.is_moe:
            # The fp8 family's kernel rows carry the experts' verdict: a FAIL where its route cannot act.
            out.append(Finding(INFO, "architecture", f"{fp8_moe_before_sm89(spec)} (the 'fp8 weight-only' kernel rows)"))
    kv = launch.kv_cache_dtype
    if kv in ("fp8_e4m3", "fp8") and not spec.supports_fp8_e4m3:
        out.append(
            Finding(
                FAIL,
                "architecture",
                f"--kv-cache-dtype {kv} needs fp8 e4m3, which Triton cannot compile before sm_89; use fp8_e5m2",
            )
        )
    if q.moe_dtype == "int8_w8a8" and cap[0] >= 10:
        out.append(
            Finding(
                INFO,
                "architecture",
                f"sgl-kernel's int8_scaled_mm has no {spec.arch_name} tiles (\"No implemented int8_scaled_mm for "
                'current compute capability"): SGLang alone fails at the first int8 linear; the plugin routes it '
                "to its Triton int8 GEMM",
            )
        )
    return out


def _nodes(launch: Launch, gpus_per_node: int | None) -> list[Finding]:
    out: list[Finding] = []
    if launch.world % max(launch.nnodes, 1):
        out.append(
            Finding(
                FAIL, "layout", f"{launch.world} GPUs cannot be split evenly over --nnodes {launch.nnodes}"
            )
        )
        return out
    per_node = launch.per_node
    if gpus_per_node is not None and per_node > gpus_per_node:
        need = -(-launch.world // gpus_per_node)
        out.append(
            Finding(
                FAIL,
                "layout",
                f"the launch needs {launch.world} GPUs in total, {per_node} per node on --nnodes {launch.nnodes}; "
                f"a node here has {gpus_per_node}: run it on {need} nodes (--nnodes {need}, {gpus_per_node} per node)",
            )
        )
    elif gpus_per_node is None and per_node > 8:
        out.append(
            Finding(
                RISK,
                "layout",
                f"the launch needs {per_node} GPUs per node (--nnodes {launch.nnodes}); most nodes have 8 at most: "
                f"give --gpus N (GPUs per node), or --nnodes {-(-launch.world // 8)}",
            )
        )
    return out


def check_constraints(
    spec: GpuSpec, desc: ModelDescription, launch: Launch, *, gpus_per_node: int | None = None
) -> list[Finding]:
    """Every constraint finding for the launch (empty when nothing stands in the way)."""
    out = _layout(desc, launch) + _nodes(launch, gpus_per_node)
    if not any(f.severity == FAIL and f.area == "layout" for f in out):
        out += _block_quant(desc, launch)
    out += _architecture(spec, desc, launch)
    if desc.quantization.unread_fields:
        out.append(
            Finding(
                INFO,
                "quantization",
                "quantization_config fields the planner does not read: "
                + ", ".join(desc.quantization.unread_fields),
            )
        )
    return out
