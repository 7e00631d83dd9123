"""Block-FP8 MoE under ``--moe-runner-backend cutlass``: what runs on a GPU, and the proof it fits and computes.

SGLang's CUTLASS MoE runner calls sgl-kernel's ``fp8_blockwise_scaled_grouped_mm``, which has
no sm_120 kernel; on sm_12x the plugin routes ``cutlass_fused_experts_fp8`` to SGLang's Triton
fused MoE with the same block-FP8 weights (:mod:`sglang_consumer_gpu.patches.cutlass_moe_fp8`
holds every SGLang path this family touches; docs/sm120.md lists the quantized call sites on
sm_120 and which the plugin covers).

``check`` area ``cutlass-moe`` (:class:`CutlassMoeProvider`): on a GPU where the route is taken,
for block-FP8 layers people run with CUTLASS MoE on 32-96 GB Blackwell cards (:data:`SHAPES`),
the up and down configs SGLang's ``try_get_optimal_moe_config`` returns with the plugin's patches
(what the routed call's ``fused_experts_impl`` asks for: ``fp8_w8a8``, block [128, 128]), each
compiled for the GPU through SGLang's launcher by the oracle; elsewhere one SKIP row saying what
runs there. There is no baseline: SGLang alone raises on the first call.

:func:`check_routed` runs the layer through SGLang's real ``cutlass_fused_experts_fp8`` attribute
as ``Fp8MoEMethod.apply`` calls it (transposed weights, ``output`` buffer) and compares the
result with float32 references (``scripts/device/cutlass_moe_check.py`` on a GPU; the tests run
it on the CPU under Triton's interpreter).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sglang_consumer_gpu.families.base import Family, Provider, quiet_sglang
from sglang_consumer_gpu.families.moe import GRID, NamedShape, _Listed, pick_items
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.oracle.item import CheckItem
from sglang_consumer_gpu.patches import cutlass_moe_fp8, moe_config

NAME = "cutlass-moe"
BLOCK = cutlass_moe_fp8.BLOCK


def _fp8(name: str, E: int, N: int, K: int, topk: int) -> NamedShape:
    return NamedShape(name, MoeShape(E, N, K, topk, "fp8_w8a8", BLOCK))


#: Block-FP8 MoE layers (N per GPU) that fit 32-96 GB sm_120 cards at these TP sizes.
SHAPES: tuple[NamedShape, ...] = (
    _fp8("Qwen3-30B-A3B-FP8", 128, 768, 2048, 8),
    _fp8("Qwen3-235B-A22B-FP8 TP4", 128, 384, 4096, 8),
    _fp8("MiniMax-M2 TP2", 256, 768, 3072, 8),
    _fp8("DeepSeek-V3 TP8", 256, 256, 7168, 8),
)


def routes(spec: GpuSpec) -> bool:
    """Does the plugin route ``--moe-runner-backend cutlass`` block-FP8 MoE to Triton on ``spec``?"""
    return cutlass_moe_fp8.needed_on(spec)


@dataclass(frozen=True)
class CutlassMoeProvider:
    """The Triton tiles the routed CUTLASS MoE calls run with (no baseline: SGLang alone raises)."""

    area: str = NAME
    baseline: bool = False
    drives_sglang: bool = True

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        if not routes(spec):
            yield CheckItem(kernel="cutlass_fused_experts_fp8", config="block-FP8 MoE",
                            skip=f"not routed here: {cutlass_moe_fp8.explain(spec)}")  # fmt: skip
            return
        with quiet_sglang():  # SGLang's "Using default MoE kernel config" is the expected answer here
            yield from pick_items(spec, SHAPES, GRID, _Listed(keep_all=full), patched=True,
                                  origin="cutlass->triton ", only_new=True)  # fmt: skip


# ------------------------------------------------------------------------------ the routed call, checked


@contextlib.contextmanager
def outside_a_server(case: Any, device: str, paths: dict[str, str]) -> Iterator[None]:
    """What a server provides and a check script has not, each SGLang's own where it runs here:

    * ``get_exec()`` (unpublished outside a server): SGLang's declared defaults (deterministic
      inference and the fused MoE sum-all-reduce off);
    * the tensor-parallel group ``fused_experts_impl`` allocates its output for: none (one GPU);
    * ``moe_align_block_size``: SGLang's when it runs and its layout checks out (sgl-kernel on a GPU),
      else the same layout from torch (``measure.moe.align``);
    * the activation quantizer the launcher calls for block FP8: SGLang's when it runs and its
      result checks out on a probe (on a GPU), else torch's with the same rule
      (``measure.moe.resolve_quantizer``: under Triton's interpreter SGLang's Triton quantizer's
      e4m3 values are wrong, ``tests/test_measure_moe.py``);

    ``paths`` records which ran. ``case`` is the layer (its activation quantization)."""
    import torch

    from sglang_consumer_gpu.measure.moe import align, kernels, resolve_quantizer, sglang_quantizer_name
    from sglang_consumer_gpu.oracle.virtual import default_exec

    fused = importlib.import_module(cutlass_moe_fp8.TRITON.module)
    saved: dict[tuple[Any, str], Any] = {}

    def swap(module: Any, name: str, value: Any) -> None:
        saved[(module, name)] = getattr(module, name)
        setattr(module, name, value)

    stack = contextlib.ExitStack()
    default = SimpleNamespace(
        deterministic=default_exec().deterministic,
        moe=SimpleNamespace(enable_fused_moe_sum_all_reduce=False),
    )
    for name in (cutlass_moe_fp8.TRITON.module, moe_config.MODULE):
        module = importlib.import_module(name)
        if not hasattr(module, "get_exec"):
            continue
        try:
            module.get_exec()
        except Exception:  # "config namespace 'exec' not published"
            swap(module, "get_exec", lambda: default)
            paths["exec"] = "SGLang's declared defaults (no server published one)"
    if hasattr(fused, "get_parallel"):
        try:
            fused.get_parallel().tp_group  # noqa: B018 (reading it is the question)
        except Exception:  # "parallel name 'tp_group' has not been written in this process"
            stack.enter_context(fused.get_parallel().override(tp_group=None))
            paths["tp_group"] = "none (one GPU, no server)"
    if hasattr(fused, "get_tp_group"):
        try:
            fused.get_tp_group()
        except Exception:
            swap(fused, "get_tp_group", lambda: None)
            paths["tp_group"] = "none (one GPU, no server)"

    def aligned(topk_ids: Any, block_m: int, num_experts: int, *args: Any, **kwargs: Any) -> Any:
        result = align(topk_ids, block_m, num_experts)
        paths["align"] = result.path
        return result.sorted_ids, result.expert_ids, result.num_post

    swap(fused, "moe_align_block_size", aligned)
    launcher = kernels()
    probe = torch.randn(3, case.shape.K, device=device).to(getattr(torch, case.act_dtype))
    quantize, paths["quant"] = resolve_quantizer(case, probe)
    if paths["quant"].startswith("torch"):
        swap(launcher, sglang_quantizer_name(case), lambda A, *args, **kwargs: quantize(A))
    try:
        with stack:
            yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def _layer_reference(x: Any, w13: Any, w2: Any, ids: Any, weights: Any, quantize: Any) -> Any:
    """float32 MoE layer: x @ w13 per routed expert, SiLU(gate) * up on the two halves, @ w2, router
    weights, summed; ``quantize(t)`` stands for what happens to an activation before each GEMM."""
    import torch

    M, topk = ids.shape
    N = w2.shape[2]
    experts = ids.reshape(-1).long()
    token = torch.arange(M * topk, device=x.device) // topk
    rows = {e: (experts == e).nonzero().squeeze(1) for e in experts.unique().tolist()}
    a = quantize(x)
    h = torch.empty(M * topk, 2 * N, dtype=torch.float32, device=x.device)
    for e, r in rows.items():
        h[r] = a[token[r]] @ w13[e].T
    inter = quantize(torch.nn.functional.silu(h[:, :N]) * h[:, N:])
    y = torch.empty(M * topk, w2.shape[1], dtype=torch.float32, device=x.device)
    for e, r in rows.items():
        y[r] = inter[r] @ w2[e].T
    return (y.view(M, topk, -1) * weights.float().unsqueeze(-1)).sum(dim=1)


def check_routed(
    E: int,
    N: int,
    K: int,
    topk: int,
    M: int,
    act_dtype: str = "bfloat16",
    *,
    device: str = "cuda",
    seed: int = 0,
) -> dict[str, Any]:
    """One block-FP8 MoE layer through SGLang's ``cutlass_fused_experts_fp8`` as ``Fp8MoEMethod.apply``
    calls it, against two float32 references from the same FP8 weights:

    * ``faithful``: the activations quantized as the routed path quantizes them (per token, groups of
      128, scale amax/448) and the intermediate rounded to the activation dtype before it: what is
      left is accumulation order and output rounding, plus the rare element whose rounding lands on
      the other side of an e4m3 step (:func:`faithful_bound`);
    * ``unquantized``: float32 activations throughout -- the size of FP8 activation quantization
      itself, reported, not judged.

    Returns a JSON-able record: whether the call was routed (the plugin's replacement is the module
    attribute), the errors, bounds, unwritten outputs and the stand-in paths."""
    import torch

    from sglang_consumer_gpu.measure.common import UNIT_ROUNDOFF, judge, row_relative_error
    from sglang_consumer_gpu.measure.moe import (
        MoeCase,
        dequantize,
        dequantize_weight,
        quantize_weight,
        torch_quantize,
    )
    from sglang_consumer_gpu.patching import registry

    dt = getattr(torch, act_dtype)
    case = MoeCase(MoeShape(E, N, K, topk, "fp8_w8a8", BLOCK), M, act_dtype)
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, generator=g, device=device)

    w13_q, w13_s = quantize_weight(randn(E, 2 * N, K) / math.sqrt(K), case)
    w2_q, w2_s = quantize_weight(randn(E, K, N) / math.sqrt(N), case)
    x = randn(M, K).to(dt)
    weights, ids = torch.topk(randn(M, E).softmax(-1), topk)
    ids = ids.to(torch.int32)
    output = torch.full_like(x, float("nan"))

    module = importlib.import_module(cutlass_moe_fp8.MODULE)
    fn = getattr(module, cutlass_moe_fp8.ATTR)
    marker = getattr(fn, registry.MARKER, None)
    buffers = [torch.zeros(E, dtype=torch.int64, device=device) for _ in range(13)]
    kwargs: dict[str, Any] = {"use_fp8_blockscale": True, "use_mxfp8": False, "output": output,
                              "enable_es": (False, False)}  # fmt: skip
    if "swiglu_limit" in inspect.signature(fn).parameters:
        kwargs["swiglu_limit"] = None
    paths: dict[str, str] = {}
    with outside_a_server(case, device, paths):
        result = fn(x, w13_q.transpose(1, 2), w2_q.transpose(1, 2), w13_s.transpose(1, 2), w2_s.transpose(1, 2),
                    weights, ids, *buffers, **kwargs)  # fmt: skip

    w13 = dequantize_weight(w13_q, w13_s, case)
    w2 = dequantize_weight(w2_q, w2_s, case)

    def through_fp8(t: Any) -> Any:
        rounded = t.to(dt)  # SGLang stores activations and the intermediate in the activation dtype
        return dequantize(*torch_quantize(rounded, case), case)

    faithful = _layer_reference(x.float(), w13, w2, ids, weights, through_fp8)
    unquantized = _layer_reference(x.float(), w13, w2, ids, weights, lambda t: t.to(dt).float())
    check = judge(result.float(), faithful, faithful_bound(act_dtype, N, K))
    status = registry.results().get(cutlass_moe_fp8.PATCH.name)
    return {
        "case": {"E": E, "N": N, "K": K, "topk": topk, "M": M, "act_dtype": act_dtype, "device": device},
        "routed": marker is not None and marker[0] == cutlass_moe_fp8.PATCH.name,
        "patch": status.to_dict() if status is not None else None,
        "returned_output_buffer": result is output,
        "faithful": check.to_dict(),
        "unquantized_error": row_relative_error(result.float(), unquantized)
        if check.unwritten == 0
        else None,
        "unit_roundoff": UNIT_ROUNDOFF[act_dtype],
        "paths": paths,
        "ok": bool(check.ok and result is output),
    }


def faithful_bound(act_dtype: str, N: int, K: int) -> float:
    """Bound on the max row relative L2 error against the quantization-faithful reference.

    Output rounding (unit roundoff u of the activation dtype) and float32 accumulation in another
    order (:data:`~sglang_consumer_gpu.measure.moe.ACCUMULATION_TERM`, 2^-10) as for one GEMM, for
    each of the two GEMMs and the router-weighted sum; and the elements whose rounding to the
    activation dtype or to e4m3 falls on the other side of a step than the reference's: each moves
    by one e4m3 step (at most 2^-3 of itself) and there are few (a boundary hit needs the
    difference, of order u, to straddle it). Allowing 4 such elements per row of the smaller
    reduction, of typical size, adds 2^-3 * sqrt(4 / min(N, K))."""
    from sglang_consumer_gpu.measure.common import UNIT_ROUNDOFF
    from sglang_consumer_gpu.measure.moe import ACCUMULATION_TERM

    return 3 * (UNIT_ROUNDOFF[act_dtype] + ACCUMULATION_TERM) + 2.0**-3 * math.sqrt(4 / min(N, K))


@dataclass(frozen=True)
class CutlassMoeFamily(Family):
    """Block-FP8 MoE under ``--moe-runner-backend cutlass`` (see the module docstring)."""

    name: str = NAME
    patch_modules: tuple[Any, ...] = (cutlass_moe_fp8,)
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        return routes(spec)

    def check_providers(self) -> tuple[Provider, ...]:
        return (CutlassMoeProvider(),)


FAMILY = CutlassMoeFamily()
