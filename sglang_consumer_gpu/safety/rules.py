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
only (:attr:`RuleBook.numerics_fixed`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


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


DEFAULT_HINT = (
    "this kernel has no registered safe shrink rule; choose a smaller tile where SGLang lets you "
    "(a server flag or config file for this kernel), or report this message with your SGLang version"
)


@dataclass(frozen=True)
class RuleBook:
    """The rules the safety net applies: a shrink rule per (module, kernel) that has one, and the
    kernels whose tile fixes their numerics (stage step-down only). Each family's patch module
    declares its own (``SHRINK_RULES``, ``NUMERICS_FIXED``); the safety-net patch gathers them
    and :func:`install` s the book when it builds the guard."""

    rules: tuple[ShrinkRule, ...] = ()
    numerics_fixed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # kernel -> modules

    def rule_for(self, module: str, kernel: str) -> ShrinkRule | None:
        for rule in self.rules:
            if rule.kernel == kernel and module in rule.modules:
                return rule
        return None

    def is_numerics_fixed(self, module: str, kernel: str) -> bool:
        return module in self.numerics_fixed.get(kernel, ())


_book = RuleBook()


def install(book: RuleBook) -> None:
    """Make ``book`` the rules of this process (the safety-net patch does, when it builds the guard)."""
    global _book
    _book = book


def book() -> RuleBook:
    return _book


def rule_for(module: str, kernel: str) -> ShrinkRule | None:
    return _book.rule_for(module, kernel)


def numerics_fixed(module: str, kernel: str) -> bool:
    return _book.is_numerics_fixed(module, kernel)


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
