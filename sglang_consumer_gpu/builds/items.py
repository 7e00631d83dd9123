"""The report's vocabulary: a line per library or tool (:class:`Item`), grouped by
package (:class:`Package`); what one shared object carries (:class:`Binary`,
read once and cached until the file changes); and the two judgements every
package shares: can this GPU run a binary (:func:`verdict`), and which
published release would fix it (:func:`release_fix`, from the facts read from
real wheels in :mod:`~sglang_consumer_gpu.builds.releases`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.builds import releases
from sglang_consumer_gpu.builds.cache import cached
from sglang_consumer_gpu.builds.compat import what_runs
from sglang_consumer_gpu.builds.elf import UnreadableBinary, open_elf
from sglang_consumer_gpu.builds.fatbin import DeviceCode, read_elf
from sglang_consumer_gpu.hardware import GpuSpec

#: Item statuses. PROBLEMS stop something from running; the others do not.
OK, JIT, NO_CODE, OPTIONAL, UNREADABLE, MISSING, LISTED = (
    "ok",
    "PTX only",
    "NO CODE",
    "not for this GPU",
    "COULD NOT READ",
    "MISSING",
    "listed",
)
PROBLEMS = (NO_CODE, UNREADABLE, MISSING)


@dataclass(frozen=True)
class Item:
    """One line of the report: a library or a tool, its status, and the fix when it needs one."""

    subject: str
    status: str
    detail: str
    fix: str = ""
    code: DeviceCode | None = None
    targets: tuple[str, ...] = ()  # a compiler's: what it accepts

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject, "status": self.status, "detail": self.detail}
        if self.fix:
            out["fix"] = self.fix
        if self.code is not None:
            out["sass"] = [a.name for a in sorted(self.code.sass)]
            out["ptx"] = [a.name for a in sorted(self.code.ptx)]
        if self.targets:
            out["targets"] = list(self.targets)
        return out


@dataclass
class Package:
    name: str
    version: str | None
    note: str = ""
    items: list[Item] = field(default_factory=list)

    @property
    def title(self) -> str:
        version = "not installed" if self.version is None else self.version
        return " ".join(p for p in (self.name, version, self.note) if p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "note": self.note,
            "items": [i.to_dict() for i in self.items],
        }


@dataclass(frozen=True)
class Binary:
    """What one shared object carries and links, or why it could not be read."""

    path: Path
    code: DeviceCode | None
    needed: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    error: str | None = None


def _read_binary(path: Path) -> dict[str, Any]:
    try:
        with open_elf(path) as elf:
            code = read_elf(elf)
            dyn = elf.dynamic()
    except UnreadableBinary as exc:
        return {"error": str(exc)}
    return {"code": code.to_dict(), "needed": list(dyn.needed), "runpath": list(dyn.runpath)}


def read_binary(path: Path) -> Binary:
    d = cached("elf", path, _read_binary)
    if "error" in d:
        return Binary(path, None, error=d["error"])
    return Binary(path, DeviceCode.from_dict(d["code"]), tuple(d["needed"]), tuple(d["runpath"]))


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def verdict(binary: Binary, label: str, spec: GpuSpec | None, optional: bool = False) -> Item:
    if binary.error is not None or binary.code is None:
        return Item(label, UNREADABLE, f"could not read: {binary.error}")
    carries = binary.code.describe()
    if spec is None:
        return Item(label, LISTED, carries, code=binary.code)
    runs = what_runs(binary.code, spec)
    if runs.how == "sass":
        return Item(label, OK, f"{carries}; {runs.describe()}", code=binary.code)
    if runs.how == "ptx":
        return Item(label, JIT, f"{carries}; {runs.describe()}", code=binary.code)
    if optional:
        return Item(label, OPTIONAL, f"{carries}; fails only if SGLang calls its kernels", code=binary.code)
    return Item(label, NO_CODE, f"{carries}; {runs.describe()}", code=binary.code)


def release_fix(good: list[releases.Fact], installed: str | None, has: str, pinned: str | None = None) -> str:
    """``pip install`` of a release whose wheel ``has`` (``"has sm_120 code"``, ``"knows sm_120a"``), from the
    facts read from real wheels: the installed version when its published wheel does (the installed files are
    another build), else the version the installed SGLang pins, else the first release after the installed
    one (else the newest)."""
    by_version = {f.version: f for f in good}
    same = by_version.get(installed or "")
    if same is not None:
        return (
            f"pip install --force-reinstall --no-deps {same.dist}=={same.version}: the published wheel's "
            f"{same.file} {has} ({same.wheel}); the installed files are another build"
        )
    if pinned in by_version:
        f = by_version[pinned]
        return f"pip install {f.dist}=={f.version} (what the installed SGLang requires; {f.wheel}: {f.file} {has})"
    best = releases.nearest(good, installed)
    if best is None:
        return f"none of the releases read here (builds/releases.py) {has.replace('has', 'have', 1)}"
    fix = f"pip install {best.dist}=={best.version} ({best.wheel}: {best.file} {has})"
    found = releases.first_sglang_pinning((best.dist,), [f for f in good if f.dist == best.dist])
    if found is not None:
        fix += f"; SGLang pins it: SGLang {found[0].version} is the first release read that requires such a build ({found[1]})"
    return fix


def ordered(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: (int(re.sub(r"\D", "", n) or 0), n)))


def span(names: tuple[str, ...]) -> str:
    return f"{names[0]} .. {names[-1]} ({len(names)} values)" if len(names) > 3 else " ".join(names)
