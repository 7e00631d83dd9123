"""What ``bench`` compares for a model on a GPU: per point, the plugin's choice and SGLang's own.

- Fused MoE, per batch size (default: the sizes the server runs the MoE at,
  :func:`~sglang_consumer_gpu.families.moe.batch_sizes` for SGLang's default launch: the
  lookup grid 1 .. 4096 up to the 4,096-token prefill chunk): the configs the plugin's patched
  lookup gives SGLang (:func:`~sglang_consumer_gpu.families.moe.plugin_choice`; SGLang's own
  where the plugin does not act on the GPU) and SGLang's own (``try_get_optimal_moe_config``
  without the plugin, for this GPU). Whether SGLang's own fits comes from the family's
  :class:`~sglang_consumer_gpu.families.moe.FitCache`: the analytic bound where it clearly
  fits, else the compile-only oracle for the GPU's architecture -- the exact
  ``metadata.shared`` a launch here would ask for.
- Extend attention, for each extend launch of the model (the family's
  :func:`~sglang_consumer_gpu.families.attention.model_cases`: heads per GPU after TP, the
  latent shape for MLA), at the engine's two workloads (prefill-heavy: 4 sequences x 2,048 new
  tokens after 512 cached; decode-heavy: 64 x 8 after 2,048): the tile the plugin's patch
  chooses and SGLang's own capability-branch tile, SGLang's fit from the oracle.

Nothing here touches the GPU (the oracle compiles only); :mod:`.run` times the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sglang_consumer_gpu.families import attention as attention_family
from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.families.base import Fit
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.attention import WORKLOADS, ExtendCase
from sglang_consumer_gpu.measure.moe import MoeCase, launch_config
from sglang_consumer_gpu.models import ModelDescription, moe_shape
from sglang_consumer_gpu.models.launch import Launch
from sglang_consumer_gpu.moe.shape import MoeShape


@dataclass(frozen=True)
class MoePoint:
    case: MoeCase
    plugin: moe_family.MoeChoice
    sglang_up: dict[str, Any]
    sglang_down: dict[str, Any] | None
    plugin_fit: Fit
    sglang_fit: Fit

    @property
    def same(self) -> bool:
        return (self.plugin.up, self.plugin.down or self.plugin.up) == (
            self.sglang_up,
            self.sglang_down or self.sglang_up,
        )


@dataclass(frozen=True)
class AttentionPoint:
    label: str
    workload: str
    case: ExtendCase
    plugin: tuple[int, int, int]
    sglang: tuple[int, int, int]
    sglang_fit: Fit

    @property
    def same(self) -> bool:
        return self.plugin == self.sglang


@dataclass
class BenchPoints:
    spec: GpuSpec
    model: ModelDescription
    tp: int
    ep: int
    shape: MoeShape | None
    act: str
    moe: list[MoePoint] = field(default_factory=list)
    attention: list[AttentionPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_batch_sizes(tp: int, ep: int) -> list[int]:
    """The batch sizes SGLang's default launch runs the fused MoE at (see the module docstring)."""
    return moe_family.batch_sizes(Launch(argv=(), tp=tp, ep=ep))


def model_moe(desc: ModelDescription, spec: GpuSpec, tp: int, ep: int) -> tuple[MoeShape | None, str | None]:
    """The MoE layer to bench, or None and why not (the bench is then attention only).
    A layout the model cannot be split into (``--tp``/``--ep``) raises ModelConfigError."""
    if not desc.is_moe:
        return None, f"{desc.name} is not a MoE model (no expert count in its config): attention only"
    q = desc.quantization
    if q.moe_dtype == "other":
        return None, f"{desc.name}'s {q.method} experts do not run SGLang's Triton fused MoE: attention only"
    shape = moe_shape(desc, tp, ep)
    if shape.dtype not in (None, "fp8_w8a8", "int8_w8a8"):
        return None, (
            f"{desc.name}'s experts are {shape.dtype}: they run SGLang's fused_moe_kernel_gptq_awq, "
            "whose config the plugin does not change: attention only"
        )
    why = moe_family.unsupported(spec, shape)
    if why:
        return None, f"{why}: attention only"
    return shape, None


def act_dtype(desc: ModelDescription) -> str:
    return "float16" if desc.torch_dtype in ("float16", "half") else "bfloat16"


def list_points(
    spec: GpuSpec, desc: ModelDescription, *, tp: int, ep: int, batch_sizes: Sequence[int]
) -> BenchPoints:
    shape, why = model_moe(desc, spec, tp, ep)
    points = BenchPoints(spec, desc, tp, ep, shape, act_dtype(desc))
    if why:
        points.notes.append(why)
    if shape is not None:
        try:
            points.moe = _moe_points(spec, shape, points.act, batch_sizes)
        except Exception as exc:  # an SGLang whose config lookup answers differently
            points.notes.append(f"fused MoE not benched: SGLang's own choice could not be read ({_error(exc)})")
        if not moe_family.active(spec):
            points.notes.append(
                f"the plugin does not change fused-MoE configs on {spec.name} "
                f"({spec.smem_per_block_optin:,} B per block): its choice is SGLang's own"
            )
    try:
        points.attention = _attention_points(spec, desc, tp)
    except Exception as exc:
        points.notes.append(f"attention not benched: SGLang's own tiles could not be read ({_error(exc)})")
    if not attention_family.extend_active(spec):
        points.notes.append(
            f"the plugin's extend-attention patch does not act on {spec.name}: SGLang's own tiles"
        )
    return points


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


def _moe_points(spec: GpuSpec, shape: MoeShape, act: str, ms: Sequence[int]) -> list[MoePoint]:
    sglang = moe_family.sglang_choices(spec, shape, ms)
    cache = moe_family.FitCache(spec, shape, compile=True)
    points = []
    for M in ms:
        up, down = sglang[M]
        up = launch_config(up)
        if down is not None:  # SGLang 0.5.23's rule: the down GEMM shares the up GEMM's routing sort
            down = dict(launch_config(down), BLOCK_SIZE_M=up["BLOCK_SIZE_M"])
        if moe_family.active(spec):
            pick = moe_family.plugin_choice(spec, shape, M)
            plugin = moe_family.MoeChoice(launch_config(pick.up), launch_config(pick.down) if pick.down else None,
                                          pick.source, pick.path, pick.down_path)  # fmt: skip
        else:
            plugin = moe_family.MoeChoice(up, down, "sglang: plugin inactive here")
        sfit = cache.fit(up, M, patched=False)
        if down is not None and down != up:
            dfit = cache.fit(down, M, patched=False)
            sfit = (
                dfit
                if dfit.fits is False or (sfit.fits is not False and (dfit.shared or 0) > (sfit.shared or 0))
                else sfit
            )
        pfit = cache.fit(plugin.up, M, patched=True)
        points.append(MoePoint(MoeCase(shape, M, act), plugin, up, down, pfit, sfit))
    return points


def _attention_points(spec: GpuSpec, desc: ModelDescription, tp: int) -> list[AttentionPoint]:
    points = []
    for ac in attention_family.model_cases(desc, Launch(argv=(), tp=tp)):
        if ac.launcher != "extend":
            continue  # decode attention: the plugin keeps SGLang's tiles
        plugin, sglang = attention_family.extend_tiles(spec, ac.lq, ac.lv)
        try:
            res = attention_family.launches(spec, ac, patched=False)
            shared = max(r.shared for r in res)
            fit = Fit(int(shared), "oracle", shared <= spec.smem_per_block_optin)
        except Exception as exc:
            fit = Fit(None, f"error: {_error(exc)}", None)
        label = f"extend Lq={ac.lq} Lv={ac.lv} {ac.q_heads}/{ac.kv_heads} heads"
        for workload, (b, n, p) in WORKLOADS.items():
            variant = ac.variant if ac.variant in ("causal", "sliding_window") else "causal"
            case = ExtendCase(ac.lq, ac.lv, ac.q_heads, ac.kv_heads, (n,) * b, (p,) * b, variant)
            points.append(AttentionPoint(label, workload, case, plugin, sglang, fit))
    return points
