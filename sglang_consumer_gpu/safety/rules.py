"""Which variants of a kernel the safety net may run instead of one that does not fit (pure).

Order, from :func:`variants`:

1. the same kernel with fewer software-pipeline stages (``num_stages`` n-1 ... 1).
   Stages only decide how many K/V tiles are prefetched into shared memory
   ahead of the loop body; the loop, its order and every arithmetic operation
   are unchanged, so results are bit for bit the same (the GPU check shows it
   for fused MoE and the batch-invariant matmul);
2. at one stage, and only for kernels with a :class:`ShrinkRule`, smaller
   tiles of a parameter that no launch grid depends on: fused MoE's
   ``BLOCK_SIZE_K`` (the reduction step) and Triton attention's ``BLOCK_N``
   (the KV step). The same sum is computed in smaller steps, so results agree
   to float rounding, not bit for bit.

A rule changes only parameters the launcher does not use to size the grid:
the safety net stores the smaller kernel under the original launch's cache
key, and the launcher keeps computing its grid from its own values.

Kernels whose tile fixes the numerics (deterministic inference's
batch-invariant ops and unified attention) get no shrink rule: a different
tile would change which additions happen in which order, which is what
``--enable-deterministic-inference`` pins down. They get the stage step-down
only (:data:`NUMERICS_FIXED`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.patches import attention_extend, moe_config

MOE_MODULES = (moe_config.LAUNCHER.module,)
EXTEND_MODULES = (attention_extend.MODULE,)
#: SGLang's deterministic-inference kernels (0.5.3+): their tiles are part of the numerics contract.
BATCH_INVARIANT_MODULES = ("sglang.srt.batch_invariant_ops.batch_invariant_ops",)


@dataclass(frozen=True)
class Variant:
    """One way to compile the kernel: a stage count and constexpr changes."""

    num_stages: int
    changes: tuple[tuple[str, int], ...] = ()

    def describe(self, before: Mapping[str, Any]) -> str:
        """``num_stages=1 (was 4)``, ``BLOCK_N=32 (was 64)``: what differs from ``before``."""
        parts = [f"{k}={v} (was {before.get(k)})" for k, v in self.to_dict().items() if before.get(k) != v]
        return ", ".join(parts) or f"num_stages={self.num_stages}"

    def to_dict(self) -> dict[str, int]:
        return {"num_stages": self.num_stages, **dict(self.changes)}


@dataclass(frozen=True)
class ShrinkRule:
    """Smaller tiles the safety net may use for one kernel, and why that is safe.

    ``params`` are halved together (those the kernel has) down to
    ``minimum``. ``requires_none``: parameters that must be ``None`` for the
    rule to apply (a TMA descriptor built on the host bakes the tile in).
    ``divides``: a constexpr each new value must divide when it is non-zero
    (fused MoE's block-quantisation group along K: one scale per K step).
    """

    kernel: str
    modules: tuple[str, ...]
    params: tuple[str, ...]
    minimum: int
    safe_because: str
    hint: str
    requires_none: tuple[str, ...] = ()
    divides: str | None = None

    def steps(
        self, constexprs: Mapping[str, Any], arg_names: Collection[str] = ()
    ) -> list[tuple[tuple[str, int], ...]]:
        """Each smaller tile to try, largest first; empty when the rule does not apply.

        ``constexprs``: the launch's constexpr values by name (a ``None``
        argument is a constexpr); ``arg_names``: all the kernel's parameters.
        """
        present = [p for p in self.params if isinstance(constexprs.get(p), int)]
        if not present:
            return []
        for name in self.requires_none:
            if name in arg_names and (name not in constexprs or constexprs[name] is not None):
                return []  # a real object was passed (a TMA descriptor holds the tile)
        group = constexprs.get(self.divides) if self.divides else 0
        out: list[tuple[tuple[str, int], ...]] = []
        values = {p: int(constexprs[p]) for p in present}
        while True:
            values = {p: v // 2 for p, v in values.items()}
            if any(v < self.minimum for v in values.values()):
                return out
            if isinstance(group, int) and group > 0 and any(group % v for v in values.values()):
                return out
            out.append(tuple(values.items()))


RULES: tuple[ShrinkRule, ...] = (
    ShrinkRule(
        kernel="fused_moe_kernel",
        modules=MOE_MODULES,
        params=("BLOCK_SIZE_K",),
        minimum=32,  # 8-bit tl.dot needs K >= 32
        safe_because="the grid is cdiv(EM, BLOCK_SIZE_M) * cdiv(N, BLOCK_SIZE_N); BLOCK_SIZE_K is only the "
        "K-loop step (K tail masked; even_Ks stays true when K % BLOCK_SIZE_K was 0)",
        hint="use a fused-MoE config that fits: your own tuned file in ~/.cache/sglang-consumer-gpu/moe_configs "
        "or the plugin's choice (`sglang-consumer-gpu moe-config --model ...` shows it)",
        requires_none=("a_desc", "b_desc"),
        divides="group_k",
    ),
    ShrinkRule(
        kernel="_fwd_kernel",
        modules=EXTEND_MODULES,
        params=("BLOCK_N", "BLOCK_N_PREFIX"),
        minimum=16,
        safe_because="the grid is (batch, heads, cdiv(len, BLOCK_M)); BLOCK_N/BLOCK_N_PREFIX are only the KV-loop "
        "steps of the online softmax (masked tail)",
        hint="use another attention backend (--attention-backend flashinfer) for this model",
    ),
    ShrinkRule(
        kernel="_fwd_kernel_dense_prefill",
        modules=EXTEND_MODULES,
        params=("BLOCK_N",),
        minimum=16,
        safe_because="the grid is (batch, heads, cdiv(len, BLOCK_M)); BLOCK_N is only the KV-loop step (masked "
        "tail, full-tile bound rounded down to BLOCK_N)",
        hint="use another attention backend (--attention-backend flashinfer) for this model",
    ),
)

#: Kernels whose tile is part of their numerics contract: stage step-down only.
NUMERICS_FIXED: dict[str, tuple[str, ...]] = {
    "matmul_kernel_persistent": BATCH_INVARIANT_MODULES,
    "bmm_kernel_persistent": BATCH_INVARIANT_MODULES,
    "_log_softmax_kernel": BATCH_INVARIANT_MODULES,
    "mean_kernel": BATCH_INVARIANT_MODULES,
    "_rms_norm_kernel": BATCH_INVARIANT_MODULES,
    "_fwd_kernel_unified": EXTEND_MODULES,
}

DEFAULT_HINT = (
    "this kernel has no registered safe shrink rule; choose a smaller tile where SGLang lets you "
    "(a server flag or config file for this kernel), or report this message with your SGLang version"
)


def rule_for(module: str, kernel: str) -> ShrinkRule | None:
    for rule in RULES:
        if rule.kernel == kernel and module in rule.modules:
            return rule
    return None


def numerics_fixed(module: str, kernel: str) -> bool:
    return module in NUMERICS_FIXED.get(kernel, ())


def variants(
    num_stages: int,
    constexprs: Mapping[str, Any],
    rule: ShrinkRule | None,
    arg_names: Collection[str] = (),
) -> list[Variant]:
    """What to try, in order, for a kernel compiled with ``num_stages`` that does not fit."""
    out = [Variant(num_stages=s) for s in range(num_stages - 1, 0, -1)]
    if rule is not None:
        out += [Variant(num_stages=1, changes=changes) for changes in rule.steps(constexprs, arg_names)]
    return out


def hint(module: str, kernel: str) -> str:
    """What the user can do when nothing fits."""
    rule = rule_for(module, kernel)
    if rule is not None:
        return rule.hint
    if numerics_fixed(module, kernel):
        return (
            "its tile fixes the numerics of --enable-deterministic-inference, so the safety net only lowers "
            "num_stages; run without --enable-deterministic-inference or on a GPU with more shared memory"
        )
    return DEFAULT_HINT
