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

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from sglang_consumer_gpu.families import FAMILIES, Provider, on_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.item import FAIL, CheckItem, error_text, finish

#: Every family's ``check`` areas, in family order.
_ALL: tuple[Provider, ...] = tuple(p for family in FAMILIES for p in family.check_providers())
PROVIDERS: tuple[Provider, ...] = tuple(p for p in _ALL if not p.baseline)
BASELINE_PROVIDERS: tuple[Provider, ...] = tuple(p for p in _ALL if p.baseline)

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
class Listing:
    """What ``check`` will compile: items (most pending) and the providers that broke."""

    items: list[CheckItem] = field(default_factory=list)
    broken: list[Broken] = field(default_factory=list)


class Session:
    """One ``check`` run on one GPU. SGLang is set up for it once -- the virtual GPU and the
    plugin's patches decided for it -- at the first provider that drives SGLang, and each
    provider's items are listed and compiled in its patch state (a baseline provider's: SGLang's
    own code). Use as a context manager."""

    def __init__(self, spec: GpuSpec) -> None:
        self.spec = spec
        self._stack = contextlib.ExitStack()
        self._set_up = False
        self._providers: dict[str, Provider] = {}

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _state(self, provider: Provider | None) -> contextlib.AbstractContextManager[object]:
        if provider is None or not getattr(provider, "drives_sglang", False):
            return contextlib.nullcontext()
        if not self._set_up:
            self._stack.enter_context(on_gpu(self.spec, patched=True))
            self._set_up = True
        return on_gpu(self.spec, patched=not provider.baseline)

    def list_items(self, providers: Iterable[Provider], *, full: bool) -> Listing:
        """Every provider's items, each labelled with its provider's area. A provider that
        raises keeps what it listed before and is recorded as broken."""
        out = Listing()
        for provider in providers:
            self._providers[provider.area] = provider
            try:
                with self._state(provider):
                    for item in provider.items(self.spec, full=full):
                        out.items.append(replace(item, area=provider.area))
            except Exception as exc:
                out.broken.append(Broken(provider.area, error_text(exc)))
        return out

    def finish(self, items: Iterable[CheckItem]) -> Iterator[list[CheckItem]]:
        """Each item compiled (:func:`~sglang_consumer_gpu.oracle.item.finish`), in order, in its
        provider's patch state."""
        for item in items:
            with self._state(self._providers.get(item.area)):
                yield finish(item)


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
