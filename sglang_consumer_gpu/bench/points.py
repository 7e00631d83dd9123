"""What ``bench`` compares for a model on a GPU: each family's points, the plugin's choice and
SGLang's own for one shape and workload.

Every family of :data:`~sglang_consumer_gpu.families.FAMILIES` is asked for its part
(``bench_points``: fused MoE per batch size, extend attention per launch and workload; a family
with nothing to bench answers None), in the families' order. Nothing here touches the GPU (the
oracle compiles only); :mod:`.run` times the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sglang_consumer_gpu.families import FAMILIES
from sglang_consumer_gpu.families.bench_points import BenchPart
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models import ModelDescription


@dataclass
class BenchPoints:
    spec: GpuSpec
    model: ModelDescription
    tp: int
    ep: int
    parts: list[BenchPart]

    @property
    def notes(self) -> list[str]:
        return [note for part in self.parts for note in part.notes]

    def part(self, area: str) -> BenchPart:
        """The part of the family named ``area`` (KeyError: no such part)."""
        for part in self.parts:
            if part.area == area:
                return part
        raise KeyError(area)


def list_points(
    spec: GpuSpec, desc: ModelDescription, *, tp: int, ep: int, batch_sizes: Sequence[int] | None = None
) -> BenchPoints:
    """Every family's part for ``desc`` at ``tp``/``ep`` on ``spec`` (``batch_sizes``: the fused
    MoE's, None for those SGLang's default launch runs it at)."""
    parts = [family.bench_points(spec, desc, tp=tp, ep=ep, batch_sizes=batch_sizes) for family in FAMILIES]
    return BenchPoints(spec, desc, tp, ep, [part for part in parts if part is not None])
