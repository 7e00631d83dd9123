"""Every kernel launch a model makes at the batch sizes the server uses, and whether it fits the
GPU: the plugin's choice and SGLang's own, side by side, one row per batch range and kernel.

Each family answers for its kernels (its ``planner_rows``: fused MoE over the launch's batch
sizes, Triton attention per launch); this module asks them in family order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sglang_consumer_gpu.families import FAMILIES
from sglang_consumer_gpu.families.base import KernelRow
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models.description import ModelDescription
from sglang_consumer_gpu.models.launch import Launch


def kernel_rows(
    spec: GpuSpec,
    desc: ModelDescription,
    launch: Launch,
    *,
    compile: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> tuple[list[KernelRow], list[str]]:
    """All kernel rows for the launch, plus notes on what was not checked."""
    rows: list[KernelRow] = []
    notes: list[str] = []
    for family in FAMILIES:
        more, why = family.planner_rows(spec, desc, launch, compile=compile, progress=progress)
        rows += more
        notes += why
    return rows, notes
