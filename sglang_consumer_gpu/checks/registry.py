"""Which providers ``check`` runs, and what its exit status means.

:data:`PROVIDERS` are the plugin's choices (what a user of the plugin runs);
:data:`BASELINE_PROVIDERS` are SGLang's own choices without the plugin, the
before picture of ``check --baseline``. Exit status: 0 when every item of a
counted area passes (SKIPs neither pass nor fail), 1 when one FAILs, 3 when a
provider broke (raised, or failed to import what it needs): its area was not
(fully) checked. The plugin's areas count; a baseline area counts only when
``--only`` names it. (2 is bad input, given by the command line.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from sglang_consumer_gpu.checks.attention import ATTENTION, ATTENTION_BASELINE
from sglang_consumer_gpu.checks.int8 import INT8
from sglang_consumer_gpu.checks.item import FAIL, CheckItem, Provider, error_text
from sglang_consumer_gpu.checks.moe import MOE, MOE_BASELINE
from sglang_consumer_gpu.hardware.spec import GpuSpec

PROVIDERS: tuple[Provider, ...] = (MOE, ATTENTION, INT8)
BASELINE_PROVIDERS: tuple[Provider, ...] = (MOE_BASELINE, ATTENTION_BASELINE)

EXIT_PASS, EXIT_FAIL, EXIT_BROKEN = 0, 1, 3


def areas() -> list[str]:
    """Every area ``--only`` accepts, in the order ``check`` runs them."""
    return [p.area for p in (*PROVIDERS, *BASELINE_PROVIDERS)]


def select(only: Sequence[str] | None, *, baseline: bool) -> list[Provider]:
    """The providers to run: those ``only`` names, else the plugin's (and with
    ``baseline`` SGLang's own). An unknown area is a ValueError listing the valid ones."""
    every = (*PROVIDERS, *BASELINE_PROVIDERS)
    if not only:
        return [*PROVIDERS, *(BASELINE_PROVIDERS if baseline else ())]
    unknown = [a for a in only if a not in {p.area for p in every}]
    if unknown:
        raise ValueError(
            f"unknown area {', '.join(map(repr, unknown))} for --only; valid areas: {', '.join(areas())}"
        )
    return [p for p in every if p.area in only]


@dataclass(frozen=True)
class Broken:
    """A provider that raised while listing its items."""

    area: str
    error: str


@dataclass
class Plan:
    """What ``check`` will compile: items (most pending) and the providers that broke."""

    items: list[CheckItem] = field(default_factory=list)
    broken: list[Broken] = field(default_factory=list)


def plan(providers: Iterable[Provider], spec: GpuSpec, *, full: bool) -> Plan:
    """Every provider's items for ``spec``, each labelled with its provider's area.
    A provider that raises keeps what it listed before and is recorded as broken."""
    out = Plan()
    for provider in providers:
        try:
            for item in provider.items(spec, full=full):
                out.items.append(replace(item, area=provider.area))
        except Exception as exc:
            out.broken.append(Broken(provider.area, error_text(exc)))
    return out


def counted_areas(providers: Iterable[Provider], only: Sequence[str] | None) -> set[str]:
    """Areas whose FAILs set the exit status: the plugin's; a baseline area only when ``only`` names it."""
    return {p.area for p in providers if not p.baseline or (only and p.area in only)}


def exit_status(items: Sequence[CheckItem], broken: Sequence[Broken], counted: set[str]) -> int:
    """See the module docstring; nothing checked at all is a FAIL."""
    if broken:
        return EXIT_BROKEN
    if not items:
        return EXIT_FAIL
    return EXIT_FAIL if any(i.status == FAIL and i.area in counted for i in items) else EXIT_PASS
