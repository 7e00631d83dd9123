"""FP8 fused MoE on GPUs without e4m3 (sm_80-sm_88): what runs for an fp8 MoE layer there, and its proof.

SGLang's fp8 experts run its Triton ``fused_moe_kernel`` (``use_fp8_w8a8``), which does not
compile below sm_89 (``type fp8e4nv not supported in this architecture``). On those GPUs the
plugin routes the call (:mod:`sglang_consumer_gpu.patches.fp8_weight_only_moe`) to its own
weight-only kernel (:mod:`sglang_consumer_gpu.fp8`): e4m3 weights decoded in registers, 16-bit
activations and math. On every other GPU SGLang's own kernel runs and the fused-MoE family
(:mod:`.moe`) answers for fp8 layers; on these, the fused-MoE family hands fp8 layers to this one.

The one answer to "what runs for this fp8 layer": :func:`plugin_choice` -- the ``BLOCK_SIZE_M``
SGLang's (patched) lookup chooses, which the routing buffers are aligned to, and the rest of the
tile from the heuristic for this kernel's operand widths (:func:`~sglang_consumer_gpu.fp8.tiles.weight_only_config`),
exactly as the patched launcher derives it at run time.

* ``check`` area ``fp8-moe`` (:class:`Fp8MoeProvider`): every tile :func:`plugin_choice` gives for
  the fp8 layers of the fused-MoE family's shape list (plus per-channel scales and, ``--full``,
  DeepSeek-V3 at TP8) over its batch grid, both GEMMs, compiled through SGLang's own launcher on
  the virtual GPU with the plugin's patches: the item FAILs unless the weight-only kernel is what
  ran, with the planned tile, inside the GPU's shared memory. ``fp8-moe-baseline``: SGLang's own
  choice for the same layers without the plugin (Triton's fp8e4nv refusal, as a FAIL per layer).
* ``doctor --model`` (:meth:`Fp8Family.planner_rows`): the fp8 experts' rows (the plugin's tile and
  its shared-memory bound, SGLang's own config and its failure) and one note on the path's cost.
* ``selftest``: the 256 e4m3 codes through the kernel's decoder (exact), and the reference layer
  (Qwen3-30B-A3B's widths) per scale layout and activation dtype, both GEMMs through SGLang's
  patched launcher, against float32 references (:mod:`sglang_consumer_gpu.fp8.layer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.families.base import Family, Fit, KernelRow, Provider, error_fit, on_gpu
from sglang_consumer_gpu.families.cases import FAIL, PASS, Case, Request, Result, Runner
from sglang_consumer_gpu.fp8.linear import REFUSED, linear_path
from sglang_consumer_gpu.fp8.route import FP8E4NV, MoeCall, route, weight_only_gpu
from sglang_consumer_gpu.fp8.tiles import shared_bound, weight_only_config
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.validate import pair_label, tile_label
from sglang_consumer_gpu.oracle.core import Resources
from sglang_consumer_gpu.oracle.item import CheckItem
from sglang_consumer_gpu.patches import fp8_weight_only_moe, moe_config

#: The plugin's kernel (``sglang_consumer_gpu.fp8.kernel``; named here so that listing needs no Triton import).
KERNEL = "fused_moe_fp8_weight_only_kernel"
GEMMS = ("up", "down")


def _fp8(named: moe_family.NamedShape) -> bool:
    return named.shape.dtype == "fp8_w8a8"


#: The fp8 layers of the fused-MoE family's lists, and the scale layout they leave out.
SHAPES: tuple[moe_family.NamedShape, ...] = (
    *(n for n in moe_family.SHAPES if _fp8(n)),
    moe_family.NamedShape(
        f"{moe_family.REFERENCE_NAME} fp8 per-channel",
        dataclasses.replace(moe_family.REFERENCE, dtype="fp8_w8a8", per_channel_quant=True),
    ),
)
FULL_SHAPES: tuple[moe_family.NamedShape, ...] = (
    *(n for n in moe_family.FULL_SHAPES if _fp8(n)),
    moe_family.NamedShape("DeepSeek-V3 TP8", MoeShape(256, 256, 7168, 8, "fp8_w8a8", (128, 128))),
)


def active(spec: GpuSpec) -> bool:
    """Does the weight-only route act on ``spec``?"""
    return weight_only_gpu(spec)


def not_here(spec: GpuSpec) -> str:
    """Why fp8 experts are not this family's on ``spec`` ("" when they are)."""
    if active(spec):
        return ""
    _, why = route(spec, MoeCall(fp8_weights=True, activations="bfloat16"))
    if spec.supports_fp8_e4m3:
        return f"{why} (the moe area checks it)"
    return why


def scheme(shape: MoeShape) -> str:
    """The weights' scale layout: ``block``, ``channel`` or ``tensor``."""
    if shape.block_shape:
        return "block"
    return "channel" if shape.per_channel_quant else "tensor"


@dataclass(frozen=True)
class Fp8Choice:
    """The weight-only kernel's config for one batch size, and what SGLang's lookup answered
    (``asked``: the config it passes to the launcher, of which the kernel keeps BLOCK_SIZE_M)."""

    config: dict[str, int]
    asked: dict[str, Any]
    source: str  # where SGLang's lookup found ``asked``


def plugin_choice(spec: GpuSpec, shape: MoeShape, M: int) -> Fp8Choice:
    """What the patched launcher runs for ``M`` tokens of the fp8 layer ``shape`` on ``spec``."""
    pick = moe_family.plugin_choice(spec, shape, M)
    return Fp8Choice(weight_only_config(M, shape, spec, pick.up["BLOCK_SIZE_M"]), dict(pick.up), pick.source)


def shapes(full: bool) -> list[moe_family.NamedShape]:
    """The fp8 layers ``check`` and the baseline compile (``--full``: the long list too)."""
    return [*SHAPES, *(FULL_SHAPES if full else ())]


# ------------------------------------------------------------------------------ check


def gemm_resources(spec: GpuSpec, shape: MoeShape, M: int, gemm: str, pick: Fp8Choice) -> Resources:
    """One GEMM through SGLang's launcher as the server calls it (bf16 activations, fp8 weights,
    SGLang's config), compiled for ``spec``: the weight-only kernel's resources, or an error
    saying what ran instead."""
    from sglang_consumer_gpu.oracle.kernels.moe import dry_run, shape_args

    launches = dry_run(spec, M=M, gemm=gemm, config=pick.asked, **shape_args(shape))
    ours = [x for x in launches if x.kernel == KERNEL]
    if not ours:
        raise RuntimeError(
            f"SGLang's launcher ran {[x.kernel for x in launches]}, not {KERNEL}: the route is not in place"
        )
    ran = {k: ours[-1].constexprs.get(k) for k in pick.config}
    if ran != pick.config:
        raise RuntimeError(
            f"the patched launcher ran {tile_label(ran)}, the plan says {tile_label(pick.config)}"
        )
    res = ours[-1].resources
    return dataclasses.replace(res, kernel=f"{res.kernel}:{gemm}")


@dataclass(frozen=True)
class Fp8MoeProvider:
    """The weight-only kernel's tiles for the fp8 layers (see the module docstring)."""

    area: str = "fp8-moe"
    baseline: bool = False
    drives_sglang: bool = True

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        why = not_here(spec)
        if why:
            yield CheckItem(kernel=KERNEL, config="fp8 fused MoE", skip=why)
            return
        listed: set[tuple[Any, ...]] = set()
        for named in shapes(full):
            shape = named.shape
            for M in moe_family.FULL_GRID if full else moe_family.GRID:
                pick = plugin_choice(spec, shape, M)
                for gemm in GEMMS:
                    reduction = shape.K if gemm == "up" else shape.N
                    key = (
                        scheme(shape),
                        gemm,
                        reduction % pick.config["BLOCK_SIZE_K"] == 0,
                        tuple(sorted(pick.config.items())),
                    )
                    if key in listed and not full:
                        continue
                    listed.add(key)
                    yield CheckItem(
                        kernel=f"{KERNEL}:{gemm}",
                        config=f"{named.label()} M={M} {gemm}: {tile_label(pick.config)} (BLOCK_SIZE_M: {pick.source})",
                        run=lambda s=shape, m=M, g=gemm, p=pick: gemm_resources(spec, s, m, g, p),
                    )


@dataclass(frozen=True)
class Fp8MoeBaseline:
    """SGLang alone on the same fp8 layers: its fp8_w8a8 kernel for its own config."""

    area: str = "fp8-moe-baseline"
    baseline: bool = True
    drives_sglang: bool = True

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        if not active(spec):
            return
        from sglang_consumer_gpu.oracle.kernels.moe import moe_gemm_resources, shape_args

        M = moe_family.GRID[2]
        for named in shapes(full):
            up, _ = moe_family.sglang_choice(spec, named.shape, M)
            yield CheckItem(
                kernel="fused_moe_kernel:up",
                config=f"{named.label()} M={M} up: SGLang alone {tile_label(up)}",
                run=lambda s=named.shape, c=up: moe_gemm_resources(
                    spec, gemm="up", M=M, config=c, **shape_args(s)
                ),
            )


# ------------------------------------------------------------------------------ doctor --model


GIB = 1024**3


def cost_note(spec: GpuSpec, desc: Any, shape: MoeShape) -> str:
    """What the weight-only path costs and saves for this model on this GPU (one line)."""
    experts = len(desc.moe_layers) * shape.E * 3 * shape.N * shape.K  # weights per GPU: w13 2N x K, w2 K x N
    return (
        f"fp8 experts on {spec.arch_name}: SGLang's fp8_w8a8 fused-MoE kernel cannot compile here ('{FP8E4NV}'); "
        f"the plugin's weight-only FP8 kernel runs them: weights stay e4m3 in memory ({experts / GIB:.2f} GiB of "
        f"experts per GPU, {2 * experts / GIB:.2f} GiB as bf16), each weight tile is decoded to 16 bits in "
        "registers (about a dozen integer and float operations per weight element per row block) and "
        "multiplied on bf16/fp16 tensor cores with float32 accumulation. Expected, not yet measured on a GPU: "
        "decode faster than a bf16 checkpoint (half the weight bytes), large prefill slower (the decode work); "
        "scripts/device/fp8_moe_check.py measures both"
    )


def _sglang_fit(spec: GpuSpec, shape: MoeShape, config: dict[str, Any], compile: bool) -> Fit:
    """SGLang alone on this fp8 layer: Triton refuses its kernel whatever the config."""
    if not compile:
        return Fit(None, f"error (Triton, any config): ValueError: {FP8E4NV}", False)
    from sglang_consumer_gpu.oracle.kernels.moe import moe_gemm_resources, shape_args

    try:
        with on_gpu(spec, patched=False):
            res = moe_gemm_resources(spec, gemm="up", M=64, config=config, **shape_args(shape))
    except Exception as exc:
        return error_fit(exc)
    return Fit(int(res.shared), "oracle", res.fits)


def planner_rows(
    spec: GpuSpec, desc: Any, launch: Any, *, compile: bool
) -> tuple[list[KernelRow], list[str]]:
    from sglang_consumer_gpu.models import ModelConfigError, moe_shape
    from sglang_consumer_gpu.versions import sglang_version

    try:
        shape = moe_shape(desc, launch.tp, launch.ep)
    except ModelConfigError as exc:
        return [], [f"fp8 fused MoE not checked: {exc}"]
    ms = moe_family.batch_sizes(launch)
    version = sglang_version()
    seam = fp8_weight_only_moe.PATCH.seam_for(version)
    uncovered = (
        None if seam is not None else
        f"error: SGLang {version} is not covered by the fp8-weight-only-moe patch "
        f"({fp8_weight_only_moe.PATCH.coverage_text()}): SGLang's own kernel runs and fails"
    )  # fmt: skip
    theirs = moe_family.sglang_choices(spec, shape, ms)
    sglang_fit = _sglang_fit(spec, shape, theirs[ms[0]][0], compile)
    picks = {m: plugin_choice(spec, shape, m) for m in ms}
    limit = spec.smem_per_block_optin

    def key(m: int) -> Any:
        return (tuple(sorted(picks[m].config.items())), picks[m].source, str(theirs[m]))

    rows = []
    for lo, hi, _ in moe_family.batch_ranges(ms, key):
        pick = picks[lo]
        bound = shared_bound(pick.config, shape, spec)
        fit = Fit(None, uncovered, False) if uncovered else Fit(bound, "bound", bound <= limit)
        up, down = theirs[lo]
        rows.append(KernelRow(
            "fused_moe fp8 weight-only", f"M={lo}" if lo == hi else f"M={lo}-{hi}", tile_label(pick.config),
            f"weight-only heuristic, BLOCK_SIZE_M from {pick.source}", fit, pair_label(up, down), sglang_fit,
        ))  # fmt: skip
    return rows, [cost_note(spec, desc, shape)]


# ------------------------------------------------------------------------------ selftest


#: (scale layout, activation dtype, in quick mode) of the reference layer.
MODES: tuple[tuple[str, str, bool], ...] = (
    ("block", "bfloat16", True),
    ("tensor", "float16", True),
    ("block", "float16", False),
    ("channel", "bfloat16", False),
    ("tensor", "bfloat16", False),
)
QUICK_M: tuple[int, ...] = (1, 1024)
FULL_M: tuple[int, ...] = (1, 5, 64, 256, 1024, 4096)
#: Extra stored roundings a whole layer has over one GEMM (the activation, the layer output), and
#: the sensitivity of SiLU-and-mul to its inputs' rounding: the whole-layer bound is this many
#: unit roundoffs (see :func:`layer_bound`).
LAYER_ROUNDINGS = 6


def layer_bound(act: str) -> float:
    """Bound on the whole layer's max row relative L2 error against the float32 reference.

    Four values are stored in the activation dtype on the way (the up GEMM's output, SiLU-and-mul's
    output, the down GEMM's output, the layer's output), each within ``u`` relative; SiLU-and-mul
    turns a relative change of its gate input into at most about twice that of its output where
    the output is large (``d ln(silu(g)) / d ln g = 1 + g (1 - sigmoid(g))`` is at most ~1.28 for
    g > 0 and large only where silu is near zero, which a row norm hardly sees), so 6u bounds the
    sum with room, plus the accumulation term of a GEMM's own bound."""
    from sglang_consumer_gpu.measure.common import UNIT_ROUNDOFF
    from sglang_consumer_gpu.measure.moe import ACCUMULATION_TERM

    return LAYER_ROUNDINGS * UNIT_ROUNDOFF[act] + ACCUMULATION_TERM


def sglang_gemm(config: dict[str, int]) -> Any:
    """A :data:`~sglang_consumer_gpu.fp8.layer.Gemm` that calls SGLang's launcher as
    ``fused_experts`` does for fp8 weights (the patched one where the plugin is active), with
    ``config`` as SGLang's lookup would pass it; it returns ``config``."""
    import torch
    import triton.language as tl

    from sglang_consumer_gpu.measure.moe import kernels

    def gemm(A: Any, B: Any, C: Any, B_scale: Any, topk_weights: Any, topk_ids: Any, sorted_ids: Any,
             expert_ids: Any, num_post: Any, *, mul_routed_weight: bool, top_k: int, block_m: int,
             block_shape: Any, per_channel_quant: bool) -> dict[str, int]:  # fmt: skip
        compute = tl.bfloat16 if A.dtype == torch.bfloat16 else tl.float16
        kernels().invoke_fused_moe_kernel(
            A, B, None, C, None, B_scale, None, topk_weights, topk_ids, sorted_ids, expert_ids, num_post,
            mul_routed_weight, top_k, dict(config, BLOCK_SIZE_M=block_m), compute_type=compute,
            use_fp8_w8a8=True, use_int8_w8a8=False, use_int8_w8a16=False, use_int4_w4a16=False,
            per_channel_quant=per_channel_quant, block_shape=block_shape,
        )  # fmt: skip
        return config

    return gemm


@dataclass(frozen=True)
class Fp8LayerRun:
    """The fp8 layer ``shape`` at ``M`` tokens in ``act``, through SGLang's launcher with the
    config its lookup passes (``asked``); ``tile``: the weight-only tile the plan expects."""

    shape: MoeShape
    M: int
    act: str
    asked: tuple[tuple[str, Any], ...]
    tile: tuple[tuple[str, int], ...]

    def jobs(self) -> list[Any]:
        return []  # compiled as it runs: the kernel is the plugin's, not a fused-MoE job of SGLang's

    def execute(self, runner: Runner, case: Case) -> Result:
        """Both GEMMs and the whole layer against float32 references (random e4m3 weights with
        subnormal codes, NaN-poisoned outputs, one expert left without tokens)."""
        import torch

        from sglang_consumer_gpu.fp8.layer import make_layer, reference_gemms, reference_layer, run_layer
        from sglang_consumer_gpu.measure.common import Check, judge, worst
        from sglang_consumer_gpu.measure.moe import MoeCase, align, error_bound

        s = self.shape
        layer = make_layer(s.E, s.N, s.K, s.topk, self.M, scheme(s), getattr(torch, self.act),
                           block=s.block_shape or (128, 128), idle=1, device=runner.device, seed=self.M)  # fmt: skip
        asked = dict(self.asked)
        bm = int(asked["BLOCK_SIZE_M"])
        al = align(layer.topk_ids, bm, s.E)
        run = run_layer(layer, (al.sorted_ids, al.expert_ids, al.num_post), bm, sglang_gemm(asked))
        if runner.device == "cuda":
            torch.cuda.synchronize()
        ref1, ref2 = reference_gemms(layer, run.a2)
        gemm_bound = error_bound(MoeCase(s, self.M, self.act))
        checks = [judge(run.c1, ref1, gemm_bound, metric="up GEMM max row relative L2 error"),
                  judge(run.c2, ref2, gemm_bound, metric="down GEMM max row relative L2 error"),
                  judge(run.out, reference_layer(layer), layer_bound(self.act), metric="layer max row relative L2 error")]  # fmt: skip
        w = worst(checks)
        check = Check(all(c.ok for c in checks), w.error, w.bound, w.metric, sum(c.unwritten for c in checks),
                      {"up": checks[0].error, "down": checks[1].error, "layer": checks[2].error, "align": al.path})  # fmt: skip
        return runner.verdict(case, check, tile=tile_label(dict(self.tile)))


@dataclass(frozen=True)
class DecodeRun:
    """The 256 e4m3 codes through the kernel's decoder against torch's ``float8_e4m3fn``."""

    act: str

    def jobs(self) -> list[Any]:
        return []

    def execute(self, runner: Runner, case: Case) -> Result:
        import torch

        from sglang_consumer_gpu.fp8.ops import decode_e4m3

        codes = torch.arange(256, dtype=torch.uint8, device=runner.device)
        got = decode_e4m3(codes, getattr(torch, self.act)).float()
        want = codes.view(torch.float8_e4m3fn).float()
        same = (got == want) & (torch.signbit(got) == torch.signbit(want)) | (got.isnan() & want.isnan())
        wrong = [int(c) for c in codes[~same].tolist()]
        if wrong:
            return Result(
                case, FAIL, f"{len(wrong)} codes decode wrongly: {wrong[:8]}", detail={"wrong": wrong}
            )
        return Result(case, PASS, f"all 256 codes exact in {self.act} (signed zeros, subnormals, NaN)")


def selftest_cases(spec: GpuSpec, request: Request) -> list[Case]:
    """The decoder and the reference layer per scale layout, activation dtype and batch size (quick:
    a subset), and the model's own fp8 layers, each with the tile :func:`plugin_choice` gives."""
    if request.problem:
        return [Case("fp8-moe", "fp8 fused MoE", KERNEL, skip=request.problem)]
    why = not_here(spec)
    if why:
        return [Case("fp8-moe", "fp8 fused MoE", KERNEL, skip=why)]
    quick = request.quick
    cases = [Case("fp8-moe", f"e4m3 decode, 256 codes -> {act}", "e4m3_decode_kernel", "-", "the kernel's decoder",
                  DecodeRun(act)) for act in ("bfloat16", "float16")]  # fmt: skip
    layers: list[tuple[str, MoeShape, str]] = []
    for mode, act, in_quick in MODES:
        if in_quick or not quick:
            shape = dataclasses.replace(moe_family.REFERENCE, dtype="fp8_w8a8", block_shape=(128, 128) if mode == "block" else None,
                                        per_channel_quant=mode == "channel")  # fmt: skip
            layers.append((f"fp8 {mode} {act}", shape, act))
    layers += [(name, shape, act) for name, shape, act in request.model_shapes if shape.dtype == "fp8_w8a8"]
    for name, shape, act in layers:
        for M in QUICK_M if quick else FULL_M:
            pick = plugin_choice(spec, shape, M)
            s = shape
            cases.append(Case(
                "fp8-moe", f"{name} E={s.E} N={s.N} K={s.K} top{s.topk} M={M}", KERNEL, tile_label(pick.config),
                f"weight-only heuristic, BLOCK_SIZE_M from {pick.source}",
                Fp8LayerRun(shape, M, act, tuple(sorted(pick.asked.items())), tuple(sorted(pick.config.items()))),
            ))  # fmt: skip
    return cases


@dataclass(frozen=True)
class Fp8Family(Family):
    """FP8 fused MoE on GPUs without e4m3 (see the module docstring)."""

    name: str = "fp8-moe"
    patch_modules: tuple[Any, ...] = (fp8_weight_only_moe,)
    kernel_modules: tuple[str, ...] = (moe_config.LAUNCHER.module,)

    def active(self, spec: GpuSpec) -> bool:
        return active(spec)

    def check_providers(self) -> tuple[Provider, ...]:
        return (Fp8MoeProvider(), Fp8MoeBaseline())

    def planner_rows(
        self, spec: GpuSpec, desc: Any, launch: Any, *, compile: bool, progress: Any = None
    ) -> tuple[list[KernelRow], list[str]]:
        q = desc.quantization
        if not desc.is_moe or q.moe_dtype != "fp8_w8a8" or not active(spec):
            return [], []
        if linear_path(spec, q.method).kind == REFUSED:
            return [], []  # SGLang refuses the model at load: the planner's architecture finding says so
        return planner_rows(spec, desc, launch, compile=compile)

    def selftest_cases(self, spec: GpuSpec, request: Request) -> list[Case]:
        return selftest_cases(spec, request)


FAMILY = Fp8Family()
