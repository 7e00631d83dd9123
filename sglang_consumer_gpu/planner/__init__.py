"""The launch planner: will ``launch_server`` with this model on these GPUs work,
and if not, what is the smallest change that makes it work?

Layers inside: :mod:`.memory`, :mod:`.constraints` and
:mod:`.verdict` are pure functions of a :class:`~sglang_consumer_gpu.hardware.GpuSpec`,
a :class:`~sglang_consumer_gpu.models.ModelDescription` and a
:class:`~sglang_consumer_gpu.models.launch.Launch`; :mod:`.sglang_edge` asks SGLang's own argument
pipeline for the launch settings and :mod:`.kernels` asks the families about
kernels (the compile-only oracle answers), each family adds its own section
(``Family.planner_section``). :func:`judge` wires them; :mod:`.suggest` re-runs
:func:`judge` on candidate changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.models import ModelDescription
from sglang_consumer_gpu.planner.constraints import FAIL, Finding, check_constraints
from sglang_consumer_gpu.planner.verdict import Assessment, assess

__all__ = ["Assessment", "judge"]


def judge(
    spec: GpuSpec,
    desc: ModelDescription,
    model_dir: str,
    argv: Sequence[str],
    *,
    gpu_bytes: float,
    gpus_per_node: int | None = None,
    compile: bool = True,
    progress: Callable[[int], Any] | None = None,
) -> Assessment:
    """Resolve ``argv`` with SGLang for ``spec``, then judge memory, constraints, kernels and the
    families' own sections.

    Raises :class:`~.sglang_edge.SglangRejects` when SGLang refuses the arguments.
    """
    from sglang_consumer_gpu.families import FAMILIES
    from sglang_consumer_gpu.planner.kernels import kernel_rows
    from sglang_consumer_gpu.planner.sglang_edge import resolve_launch

    launch = resolve_launch(spec, model_dir, argv, gpu_bytes)
    blocking = [
        f for f in check_constraints(spec, desc, launch, gpus_per_node=gpus_per_node) if f.severity == FAIL
    ]
    rows, notes = [], []
    if blocking:
        notes.append("kernels not checked: the launch fails before any kernel runs")
    else:
        rows, notes = kernel_rows(spec, desc, launch, compile=compile, progress=progress)
    sections = [s for f in FAMILIES if (s := f.planner_section(spec, desc, launch)) is not None]
    result = assess(
        spec,
        desc,
        launch,
        gpu_bytes,
        gpus_per_node=gpus_per_node,
        kernels=rows,
        kernel_notes=notes,
        sections=sections,
    )
    result.findings += [Finding("note", "sglang", n) for n in launch.notes]
    return result
