"""``doctor --model M [SGLang launch flags]``: one verdict for a launch, per GPU.

    sglang-consumer-gpu doctor --model Qwen/Qwen3-30B-A3B-FP8 --gpu "RTX 4090" --tp 1
    sglang-consumer-gpu doctor --model ./DeepSeek-R1 --gpu L40S --tp 32 --nnodes 4 --explain

Everything after the plugin's own options (``--model``, ``--gpu``, ``--gpus``,
``--gpu-mem``, ``--explain``, ``--json``, ``--no-compile``) is handed to
SGLang's own argument parser, so a ``launch_server`` command line can be pasted
as it is (``--model-path`` works in place of ``--model``). Exit codes: 0 OK,
1 AT RISK, 3 WILL FAIL, 2 bad input (including flags SGLang rejects).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from sglang_consumer_gpu.hardware import GpuSpec, current_spec, find_gpu
from sglang_consumer_gpu.models import ModelConfigError, ModelDescription, load_model, resolve
from sglang_consumer_gpu.planner.constraints import FAIL, INFO, RISK
from sglang_consumer_gpu.planner.memory import GIB, PRE_LOAD_OVERHEAD_GIB
from sglang_consumer_gpu.planner.multigpu import AREA as MULTI_GPU
from sglang_consumer_gpu.planner.verdict import Assessment

_TAG = {FAIL: "x", RISK: "!", INFO: "-", "note": "-"}
#: Far above any GPU's memory: a larger --gpu-mem is a typo (or inf), not a GPU.
MAX_GPU_MEM_GIB = 4096
#: ``doctor``'s options that only mean something for a launch (destination, flag).
MODEL_ONLY = (
    ("gpus", "--gpus"),
    ("gpu_mem", "--gpu-mem"),
    ("explain", "--explain"),
    ("no_compile", "--no-compile"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``doctor`` takes for ``--model`` (called from cli/doctor.py)."""
    p.add_argument(
        "--model",
        metavar="PATH|HF-ID",
        help="judge a launch of this model (directory, config.json or cached HF id)",
    )
    p.add_argument(
        "--gpus", type=int, metavar="N", help="with --model: GPUs per node (default: the live count, if any)"
    )
    p.add_argument(
        "--gpu-mem", type=float, metavar="GIB", help="with --model: memory per GPU as nvidia-smi reports it"
    )
    p.add_argument("--explain", action="store_true", help="with --model: show the memory arithmetic")
    p.add_argument(
        "--no-compile", action="store_true", help="with --model: analytic bounds only, compile nothing"
    )


def _model_ref(args: argparse.Namespace, extra: list[str]) -> tuple[str, list[str]]:
    given = [a for a in extra if a == "--model-path" or a.startswith("--model-path=")]
    if len(given) + bool(args.model) > 1:
        raise ValueError("give the model once, with --model or --model-path")
    if args.model:
        return args.model, extra
    if given:
        i = extra.index(given[0])
        if "=" in given[0]:
            return given[0].split("=", 1)[1], extra[:i] + extra[i + 1 :]
        if i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            return extra[i + 1], extra[:i] + extra[i + 2 :]
        raise ValueError("--model-path needs a value: the model's directory or Hugging Face id")
    if extra:  # without a model these are not launch flags: name them instead of asking for one
        raise ValueError(
            f"unrecognized arguments: {' '.join(extra)} (SGLang launch flags need a model: "
            "give the model with --model PATH|HF-ID)"
        )
    flags = " ".join(flag for dest, flag in MODEL_ONLY if getattr(args, dest) not in (None, False))
    raise ValueError(f"{flags or 'a launch'} needs a model: give the model with --model PATH|HF-ID")


def wants_model(args: argparse.Namespace) -> bool:
    """Whether ``doctor`` was asked about a launch (a model, launch flags or a --model-only option)."""
    given = any(getattr(args, dest) not in (None, False) for dest, _ in MODEL_ONLY)
    return bool(args.model or getattr(args, "sglang_args", None) or given)


def _spec(args: argparse.Namespace) -> GpuSpec:
    spec = find_gpu(args.gpu) if args.gpu else current_spec()
    if spec is None:
        raise ValueError("no GPU visible: pass --gpu NAME (e.g. --gpu 'NVIDIA GeForce RTX 4090')")
    return spec


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, desc="compiling kernels (cached after the first run)", unit="compile", file=sys.stderr
    )


def run(args: argparse.Namespace) -> int:
    from sglang_consumer_gpu import planner
    from sglang_consumer_gpu.planner.command import launch_command
    from sglang_consumer_gpu.planner.multigpu import box_for, multigpu_findings
    from sglang_consumer_gpu.planner.sglang_edge import SglangRejects, known, other_checkpoint
    from sglang_consumer_gpu.planner.suggest import suggest
    from sglang_consumer_gpu.topology import installed_nccl, read_topology

    extra = list(getattr(args, "sglang_args", []) or [])
    ref, extra = _model_ref(args, extra)
    spec = _spec(args)
    if args.gpu_mem is not None and not 0 < args.gpu_mem <= MAX_GPU_MEM_GIB:  # nan and inf too
        raise ValueError(
            f"--gpu-mem must be one GPU's memory in GiB, above 0 and at most {MAX_GPU_MEM_GIB} "
            f"(got {args.gpu_mem}), e.g. --gpu-mem 23.6"
        )
    if args.gpus is not None and args.gpus <= 0:
        raise ValueError(f"--gpus must be positive, got {args.gpus}")
    gpu_bytes = args.gpu_mem * GIB if args.gpu_mem else float(spec.memory_bytes)
    if gpu_bytes <= 0:
        raise ValueError(f"{spec.name}: memory size unknown; pass --gpu-mem GIB")
    gpus = args.gpus
    if gpus is None and not args.gpu:
        from sglang_consumer_gpu.hardware import live_specs

        gpus = len(live_specs()) or None
    live = None if args.gpu else read_topology()
    nccl = installed_nccl()
    files = resolve(ref)
    quant = _flag_value(extra, "--quantization")
    try:
        desc = load_model(ref, quantization=quant)
    except ModelConfigError as exc:
        raise ValueError(str(exc) if ref in str(exc) else f"{ref}: {exc}") from None
    waiting = (
        "its answers cached by an earlier run"
        if known(spec, str(files.model_dir), extra, gpu_bytes)
        else "importing SGLang: 10-20 s the first time; its answers are cached for the next run"
    )
    print(f"asking SGLang how it would launch {desc.name} on {spec.name} ({waiting})...", file=sys.stderr)

    def evaluate(argv: Sequence[str], d: ModelDescription, other: bool = False) -> Assessment:
        def run_in(model_dir: str) -> Assessment:
            result = planner.judge(
                spec,
                d,
                model_dir,
                argv,
                gpu_bytes=gpu_bytes,
                gpus_per_node=gpus,
                compile=not args.no_compile,
                progress=_progress,
            )
            box = box_for(live, spec, result.launch, gpus)
            result.findings += multigpu_findings(box, result.launch, nccl, os.environ)
            return result

        if not other:
            return run_in(str(files.model_dir))
        with other_checkpoint(str(files.config_path)) as model_dir:
            return run_in(model_dir)

    try:
        result = evaluate(extra, desc)
    except SglangRejects as exc:
        raise ValueError(f"SGLang rejects these arguments: {exc}") from None
    suggestions = suggest(result, evaluate)
    command = launch_command(result, suggestions, evaluate, ref)
    if args.json:
        data = result.to_dict()
        data["suggestions"] = [s.to_dict() for s in suggestions]
        data["launch_command"] = command.to_dict()
        print(json.dumps(data, indent=1, default=str))
    else:
        print_assessment(result, suggestions, explain=args.explain, gpu_from_flag=args.gpu_mem is not None)
        print_command(command)
    return result.exit_code


def print_command(command: Any) -> None:
    """The line to run, with what the planner added to the user's flags and its verdict on it."""
    print()
    verdict = command.result.verdict if command.result else "?"
    added = f"; added: {', '.join(command.changes)}" if command.changes else "; your flags as they are"
    print(f"Launch command (re-checked: {verdict}{added})")
    print(f"  {command.line}")


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _g(b: float) -> str:
    return f"{b / GIB:.2f} GiB"


def _model_line(d: ModelDescription) -> str:
    a = d.attention
    att = "MLA" if a.is_mla else f"{a.q_heads}/{a.kv_heads} heads x {a.head_dim}"
    moe = f", {d.moe.experts} experts top-{d.moe.topk} x {d.moe.intermediate}" if d.moe else ""
    return f"{d.name}: {d.architecture or d.model_type}, {d.layers} layers, hidden {d.hidden}, {att}{moe}, {d.quantization.label()}"


def print_assessment(
    r: Assessment, suggestions: list[Any], *, explain: bool, gpu_from_flag: bool = False
) -> None:
    s, L, m = r.spec, r.launch, r.memory
    print(f"Model  {_model_line(r.desc)}")
    mem_src = "--gpu-mem" if gpu_from_flag else ("live" if s.source == "live" else "catalog: marketed size")
    print(
        f"GPU    {s.name} ({s.arch_name}, {s.smem_per_block_optin:,} B shared/block, "
        f"{L.gpu_mem_mib / 1024:.1f} GiB [{mem_src}]) x {L.world}: {L.layout()}"
    )
    print(f"Launch {' '.join(L.argv) or '(SGLang defaults)'}")
    print()
    reasons = r.reasons
    print(
        f"VERDICT: {r.verdict}"
        + (f" ({len(reasons)} reason{'s' if len(reasons) > 1 else ''})" if reasons else "")
    )
    for f in reasons:
        print(f"  {_TAG[f.severity]} [{f.area}] {f.text}")
    for section in r.sections:
        print()
        print(section.title)
        for line in section.lines:
            print(f"  {line}")
    if m is not None:
        print()
        print("Memory, per GPU" + (f" (tightest pipeline stage: {m.worst.stage})" if L.pp > 1 else ""))
        dflt = (
            " (SGLang's default)"
            if m.fraction == m.default_fraction
            else f" (SGLang's default: {m.default_fraction})"
        )
        print(f"  weights            {_g(m.worst.weights)}")
        print(f"  KV cache           {m.worst.kv_bytes_per_token:,.0f} B/token ({L.kv_dtype_label})")
        print(f"  static fraction    {m.fraction}{dflt}")
        print(f"  KV pool            {_g(max(m.kv_pool_bytes, 0))} -> max_total_num_tokens ~{m.kv_tokens:,}")
        print(
            f"  outside the pool   {_g(m.headroom_bytes)} for activations and CUDA graphs "
            f"(SGLang's own estimate {_g(m.sglang_reserve_bytes)})"
        )
        if explain:
            _explain(r)
    if r.kernels or r.kernel_notes:
        print()
        print("Kernels, per GPU (plugin's choice | SGLang alone)")
        for k in r.kernels:
            flag = "   <- SGLang alone would fail here" if k.sglang_alone_fails else ""
            print(
                f"  {k.kernel} {k.batches}: {k.plugin_config} [{k.plugin_source}] {k.plugin_fit.label(s.smem_per_block_optin)}"
                f" | {k.sglang_config} {k.sglang_fit.label(s.smem_per_block_optin)}{flag}"
            )
        for n in r.kernel_notes:
            print(f"  - {n}")
    others = [f for f in r.findings if f not in reasons]
    if others:
        print()
        print("Also")
        for f in others:
            print(f"  {_TAG.get(f.severity, '-')} [{f.area}] {f.text}")
    if suggestions:
        print()
        print("What to do (each re-checked by the planner)")
        for i, sg in enumerate(suggestions, 1):
            res = sg.result
            tail = ""
            if res.memory is not None:
                tail = f"; weights {_g(res.memory.worst.weights)}/GPU, ~{res.memory.kv_tokens:,} KV tokens"
            why = f": {res.reasons[0].text}" if res.reasons else ""
            print(f"  {i}. {sg.change}\n     -> {res.verdict}{tail}{why}")
            print(f"     flags: {' '.join(sg.argv)}")
    elif r.verdict != "OK" and all(f.area == MULTI_GPU for f in reasons):
        print()
        print("What to do: what each reason above says (they are about the machine, not the launch flags)")
    elif r.verdict != "OK":
        print()
        print(
            "What to do: no single change the planner tries (EP, TP/PP, checkpoint, KV dtype, static fraction, nodes) fixes it"
        )


def _explain(r: Assessment) -> None:
    m, L, d = r.memory, r.launch, r.desc
    assert m is not None
    st = m.worst
    print()
    print(
        "  The arithmetic"
        + (f" (stage {st.stage}, layers {st.layers[0]}-{st.layers[1] - 1})" if L.pp > 1 else "")
    )
    print(f"  SGLang (its own functions, on a virtual {r.spec.name} with {L.gpu_mem_mib:,.0f} MiB):")
    print(
        f"    mem_fraction_static default {m.default_fraction} = (gpu_mem - reserved) / gpu_mem, reserved "
        f"{L.gpu_mem_mib * (1 - m.default_fraction):,.0f} MiB (handle_gpu_memory_settings)"
    )
    print(
        f"    chunked_prefill_size {L.chunked_prefill_size}; decode CUDA graphs {len(L.decode_graph_bs)} sizes up to "
        f"{max(L.decode_graph_bs, default=0)}; attention backend {L.attention_backend}; MoE runner {L.moe_runner_backend}"
    )
    if L.pp > 1:
        print(f"    pipeline stages (get_pp_indices): {', '.join(f'{a}-{b - 1}' for a, b in L.pp_layers)}")
    print("  weights (planner, from config.json and the quantization):")
    for p in st.parts:
        print(f"    {p.name:<38} {_g(p.bytes):>11}  {p.how}")
    print(f"    {'total':<38} {_g(st.weights):>11}")
    print(
        f"  KV cache (planner, SGLang's cell-size rule): {st.kv_how} = {st.kv_bytes_per_token:,.0f} B/token"
    )
    print(
        f"  before the weights load: {_g(m.gpu_bytes)} - {PRE_LOAD_OVERHEAD_GIB:.2f} GiB (CUDA context, NCCL: "
        f"assumed, not modelled) = {_g(m.pre_load_bytes)}"
    )
    print(
        f"  KV pool = {_g(m.pre_load_bytes)} x {m.fraction} - {_g(st.weights)} = {_g(m.kv_pool_bytes)}"
        f" -> {m.kv_tokens:,} tokens (/ {st.kv_bytes_per_token:,.0f} B, page {L.page_size})"
    )
    print(
        f"  max_running_requests ~{m.max_running_requests:,} (SGLang's resolve_max_num_reqs rule, context {L.context_len:,})"
    )
    print(
        f"  outside the pool = {_g(m.pre_load_bytes)} x {1 - m.fraction:.3f} = {_g(m.headroom_bytes)};"
        f" fused-MoE buffers of one {L.chunked_prefill_size * L.attn_dp}-token prefill: {_g(m.moe_activation_bytes)}"
    )
    for n in m.notes:
        print(f"  not modelled: {n}")
    if d.quantization.unquantized:
        print(
            f"  kept in 16 bits by the checkpoint: {len(d.quantization.unquantized)} module patterns (e.g. {d.quantization.unquantized[0]})"
        )
