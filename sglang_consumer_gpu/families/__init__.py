"""The kernel families: one module each, the one place that answers "what runs for this shape".

A family is one kind of kernel the plugin chooses for -- fused MoE (:mod:`.moe`), Triton
attention (:mod:`.attention`), the int8 scaled GEMM (:mod:`.int8`), block-FP8 MoE under
``--moe-runner-backend cutlass`` on sm_120 (:mod:`.cutlass_moe`), SGLang's backend choices
(:mod:`.backends`), FP8 experts on GPUs without e4m3 (:mod:`.fp8`) -- or guards (the safety net,
:mod:`.safety_net`). Its module owns, for
every tool: what SGLang runs with the plugin and without it (``plugin_choice`` /
``sglang_choice``, or the family's tile functions), its reference shapes, whether its patches
act on a GPU, and its ``check`` areas, behind the :class:`~.base.Family` protocol. ``check``, ``selftest``, ``bench`` and ``doctor --model``
iterate :data:`FAMILIES` or ask one family; none of them answers these questions itself.

A family's SGLang knowledge lives in its patch module(s) in :mod:`sglang_consumer_gpu.patches`:
every SGLang module and attribute it patches, imports or dry-runs, per release range
(:class:`~sglang_consumer_gpu.patching.base.Seam`). They sit below the tools because the
runtime (the patches, the virtual GPU, the safety net's rules, the live engine) needs them
without the tools; the family module re-exports nothing and names them where it uses them.

Behind the protocol, per family: ``check_providers`` (its ``check`` areas, compiled by the
oracle), ``planner_rows`` (its kernel rows in ``doctor --model``), ``launch_facts`` and
``planner_section`` (what it reads from SGLang's resolution of the launch, and its own section
and findings there, a flag to re-check as each finding's fix), ``selftest_cases`` and
``selftest_prepare`` (its ``selftest`` rows, each run carrying its own live check:
:mod:`.cases`), ``bench_points`` (its part of ``bench``: points that give their report rows,
compile jobs and timing, :mod:`.bench_points`), ``active`` and ``kernel_modules``.

A new family touches (the backends family was the first: ``backends/``, three patch modules,
``families/backends.py``):

1. its decision package, if it has one (e.g. ``sglang_consumer_gpu/fp8/``: tiles, route, kernel);
2. ``sglang_consumer_gpu/patches/<name>.py``: its seams and ``PATCH``/``PATCHES`` (the runtime
   finds every module of that package, no list to edit);
3. ``sglang_consumer_gpu/families/<name>.py`` with a ``FAMILY`` object implementing
   :class:`~.base.Family`, and one line in :data:`FAMILIES` below.

``check`` then compiles its ``check_providers``' items (``--only <area>`` too), ``selftest``
runs its cases, ``bench`` times its points, ``doctor --model`` shows its rows and its section and
``doctor`` reports its patches, with no edit in ``checks/``, ``selftest/``, ``bench/``, ``planner/``
or ``cli/``. ``tests/test_families.py`` checks
that every patch module belongs to exactly one family.
"""

from __future__ import annotations

from sglang_consumer_gpu.families import attention, backends, cutlass_moe, fp8, int8, moe, safety_net
from sglang_consumer_gpu.families.base import Family, Provider, on_gpu

#: Every family, in the order the tools report them.
FAMILIES: tuple[Family, ...] = (
    moe.FAMILY,
    attention.FAMILY,
    int8.FAMILY,
    cutlass_moe.FAMILY,
    backends.FAMILY,
    safety_net.FAMILY,
    fp8.FAMILY,
)

__all__ = ["FAMILIES", "Family", "Provider", "on_gpu"]
