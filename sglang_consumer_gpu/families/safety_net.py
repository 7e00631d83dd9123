"""The safety net: SGLang's Triton kernels that overflow shared memory compile with fewer stages or a smaller tile.

Not a family of kernels the plugin chooses for, but one the tools treat alike: its patches
(:mod:`sglang_consumer_gpu.patches.safety_net`, on Triton) act on every ~99 KB GPU, and the
selftest proves them with tiles that do not fit (the fused-MoE and attention families' runs,
forced). It compiles nothing the plugin chooses, so it has no ``check`` area and no rows in
``doctor --model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.families.attention import AttentionRun
from sglang_consumer_gpu.families.base import Family
from sglang_consumer_gpu.families.cases import Case, Request, tile_text
from sglang_consumer_gpu.families.moe import REFERENCE, MoeRun
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.measure.attention import ExtendCase
from sglang_consumer_gpu.measure.moe import MoeCase
from sglang_consumer_gpu.moe.validate import tile_label
from sglang_consumer_gpu.patches import safety_net


def install() -> dict[str, str]:
    """Register and apply the safety net now (a process the plugin's activation did not reach)."""
    return safety_net.install()


# ------------------------------------------------------------------------------ selftest


#: A fused-MoE tile from SGLang's tuned files for data-center GPUs (128x128x128, 8 warps,
#: 4 stages): 196,608 B on sm_80/86/89/120 and 262,144 B on sm_90, more than any GPU allows.
DATACENTER_MOE_TILE: dict[str, int] = {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128,
                                       "GROUP_SIZE_M": 1, "num_warps": 8, "num_stages": 4}  # fmt: skip
SAFETY_MOE_M = 256
#: SGLang's sm_80/sm_90 extend tile for MLA (Lq 576, Lv 512): 106,496 B compiled for sm_89/sm_90.
DATACENTER_EXTEND = ((576, 512), (32, 64, 8))



def selftest_cases(spec: GpuSpec, request: Request) -> list[Case]:
    """A data-center fused-MoE tile (and, full, SGLang's widest extend-attention tile) that does
    not fit the GPU must complete through the guard and match."""
    from sglang_consumer_gpu.attention import tile_fits
    from sglang_consumer_gpu.moe.smem import estimate_shared

    problem, quick = request.problem, request.quick
    if problem:
        return [Case("safety", "safety net", "triton JITFunction._do_compile", skip=problem)]
    if not FAMILY.active(spec):
        return [Case("safety", "safety net", "triton JITFunction._do_compile", skip=(
            f"the safety net acts only on ~99 KB GPUs; {spec.name} allows {spec.smem_per_block_optin:,} B per block"))]  # fmt: skip
    out: list[Case] = []
    shape = REFERENCE
    need = estimate_shared(DATACENTER_MOE_TILE, None, None, spec.capability)
    label = tile_label(DATACENTER_MOE_TILE)
    name = f"safety net: fused MoE bf16 E={shape.E} N={shape.N} K={shape.K} top{shape.topk} M={SAFETY_MOE_M}"
    if need > spec.smem_per_block_optin:
        case = MoeCase(shape, SAFETY_MOE_M)
        out.append(Case("safety", name, "fused_moe_kernel", label,
                        f"SGLang's data-center tuned-file tile: needs ~{need:,} B > {spec.smem_per_block_optin:,} B",
                        MoeRun(case, dict(DATACENTER_MOE_TILE), None, guarded=True)))  # fmt: skip
    else:
        out.append(
            Case("safety", name, "fused_moe_kernel", label, skip=f"the tile fits this GPU (~{need:,} B)")
        )
    if not quick:
        (lq, lv), tile = DATACENTER_EXTEND
        case = ExtendCase.for_check(lq, lv)
        name = f"safety net: {case.label} with SGLang's sm_80/sm_90 tile"
        if not tile_fits(spec, tile[0], tile[1], lq, lv):
            out.append(Case("safety", name, "_fwd_kernel (extend)", tile_text(tile),
                            "SGLang's data-center extend tile (106,496 B compiled for sm_89/sm_90)",
                            AttentionRun(case, tile, tile, live=False, guarded=True)))  # fmt: skip
        else:
            out.append(
                Case("safety", name, "_fwd_kernel (extend)", tile_text(tile), skip="the tile fits this GPU")
            )
    return out


@dataclass(frozen=True)
class SafetyNetFamily(Family):
    """The safety net (see the module docstring)."""

    name: str = "safety"
    patch_modules: tuple[Any, ...] = (safety_net,)
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        return all(p.needed_on(spec) for p in safety_net.PATCHES)

    def selftest_cases(self, spec: GpuSpec, request: Request) -> list[Case]:
        return selftest_cases(spec, request)


FAMILY = SafetyNetFamily()
