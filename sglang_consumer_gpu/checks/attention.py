"""The attention ``check`` provider: every Triton attention launch SGLang makes, per head dim.

The launches are the oracle's :func:`~sglang_consumer_gpu.oracle.kernels.attention.cases`
(as each can run on the GPU: :func:`~sglang_consumer_gpu.oracle.kernels.attention.for_spec`),
dry-run through SGLang's own launchers with the plugin's patches (area
``attention``) or without them (``attention-baseline``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from sglang_consumer_gpu.checks.item import CheckItem
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.core import Resources
from sglang_consumer_gpu.oracle.kernels.attention import AttentionCase, cases, for_spec, launch_resources


def _resources(spec: GpuSpec, case: AttentionCase, *, patched: bool) -> list[Resources]:
    """The case's kernels; a one-kernel launch is named after its launcher (``attention.extend``)."""
    found = launch_resources(spec, case, patched=patched)
    if len(found) == 1:
        return [replace(found[0], kernel=f"attention.{case.launcher}")]
    return found


@dataclass(frozen=True)
class AttentionProvider:
    """Attention launches with the plugin's tiles (``baseline=False``) or SGLang's own."""

    area: str
    baseline: bool

    def items(self, spec: GpuSpec, *, full: bool) -> Iterator[CheckItem]:
        for case in cases(full=full):
            yield CheckItem(
                kernel=f"attention.{case.launcher}",
                config=for_spec(case, spec).label,
                run=lambda case=case: _resources(spec, case, patched=not self.baseline),
            )


ATTENTION = AttentionProvider("attention", baseline=False)
ATTENTION_BASELINE = AttentionProvider("attention-baseline", baseline=True)
