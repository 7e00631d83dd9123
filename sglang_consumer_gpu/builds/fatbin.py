"""Which GPU architectures a shared object carries code for, read from the CUDA
fat binaries embedded in it.

nvcc links every translation unit's device code into the ``.nv_fatbin``
section as fat-binary containers (magic ``0xBA55ED50``). Each container holds
entries, and each entry header names its kind (PTX text, ELF cubin = SASS, or
LTO IR), its SM version, and flags. The header alone answers "which
architectures": a payload may be compressed (LZ4, or zstd since CUDA 13) and
is never opened, so the whole of ``libtorch_cuda.so`` (~500 MB, 475
containers) is walked by reading about 3,000 headers.

Layout (checked against ``cuobjdump --list-elf/--list-ptx`` on the wheels of
torch, sgl-kernel and on nvcc 13.0 output, tests/test_builds.py):

    container: u32 magic, u16 version (1), u16 header size (16), u64 size of the entries
    entry:     u16 kind (1 PTX, 2 ELF, 8 LTO IR), u16, u32 header size, u64 payload size (padded),
               u32 compressed size, u32, u32 code version, u32 SM (e.g. 120), u32, u32,
               u64 flags (0x100000 arch-specific "a", 0x200000 family "f", 0x2000 LZ4, 0x8000 zstd), ...

The "a"/"f" bits are what make ``sm_90a`` differ from ``sm_90`` (cuobjdump
prints the family variant of a cubin without its "f").
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.builds.elf import ElfFile, UnreadableBinary, open_elf

FATBIN_MAGIC = 0xBA55ED50
_CONTAINER = struct.Struct("<IHHQ")
_MAGIC_BYTES = struct.pack("<IHH", FATBIN_MAGIC, 1, 16)
_ENTRY_FIXED = 64
KIND_PTX, KIND_ELF, KIND_LTO = 1, 2, 8
FLAG_ARCH_SPECIFIC = 0x100000
FLAG_FAMILY = 0x200000
#: The section the CUDA runtime loads device code from (``.nvFatBinSegment`` points into it).
#: ``__nv_relfatbin`` (relocatable device code, e.g. in libtorch_nvshmem.so) is nvlink's input,
#: never loaded as it is: cuobjdump skips it, and so does the reader.
FATBIN_SECTION = ".nv_fatbin"


@dataclass(frozen=True, order=True)
class Arch:
    """One code target, as nvcc spells it: ``sm_90``, ``sm_90a`` (that GPU only), ``sm_120f`` (its family)."""

    major: int
    minor: int
    suffix: str = ""  # "", "a" or "f"

    @property
    def number(self) -> int:
        return self.major * 10 + self.minor

    @property
    def name(self) -> str:
        return f"sm_{self.number}{self.suffix}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: str) -> Arch:
        """``"sm_120a"``, ``"compute_89"`` or ``"120"``."""
        m = re.fullmatch(r"(?:sm_|compute_|lto_)?(\d+)(\d)([af]?)", text.strip())
        if not m:
            raise ValueError(f"not a CUDA architecture: {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), m.group(3))

    @classmethod
    def from_entry(cls, sm: int, flags: int) -> Arch:
        suffix = "a" if flags & FLAG_ARCH_SPECIFIC else "f" if flags & FLAG_FAMILY else ""
        return cls(sm // 10, sm % 10, suffix)


@dataclass(frozen=True)
class DeviceCode:
    """The device code one file carries: SASS (cubins) and PTX, by architecture."""

    sass: frozenset[Arch] = field(default_factory=frozenset)
    ptx: frozenset[Arch] = field(default_factory=frozenset)
    containers: int = 0
    entries: int = 0

    @property
    def empty(self) -> bool:
        return not self.sass and not self.ptx

    def describe(self) -> str:
        """``SASS sm_80, sm_90a; PTX none``."""

        def names(archs: frozenset[Arch]) -> str:
            return ", ".join(a.name for a in sorted(archs)) or "none"

        return f"SASS {names(self.sass)}; PTX {names(self.ptx)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sass": [a.name for a in sorted(self.sass)],
            "ptx": [a.name for a in sorted(self.ptx)],
            "containers": self.containers,
            "entries": self.entries,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceCode:
        return cls(
            frozenset(map(Arch.parse, d["sass"])),
            frozenset(map(Arch.parse, d["ptx"])),
            int(d["containers"]),
            int(d["entries"]),
        )


class _Walk:
    def __init__(self, elf: ElfFile) -> None:
        self.elf = elf
        self.sass: set[Arch] = set()
        self.ptx: set[Arch] = set()
        self.containers = 0
        self.entries = 0

    def region(self, start: int, end: int) -> None:
        """Every container between ``start`` and ``end`` (padding between containers is skipped)."""
        data, off = self.elf.data, start
        while off + _CONTAINER.size <= end:
            if data[off : off + 8] != _MAGIC_BYTES:
                off = data.find(_MAGIC_BYTES, off + 1, end)
                if off < 0:
                    return
            _, _, header, size = self.elf.unpack(_CONTAINER.format, off)
            if off + header + size > end:
                raise UnreadableBinary(
                    f"{self.elf.path}: fat binary at byte {off} runs past its section ({size} bytes)"
                )
            self.container(off + header, off + header + size)
            off += header + size

    def container(self, off: int, end: int) -> None:
        self.containers += 1
        while off < end:
            kind, _, header, payload = self.elf.unpack("<HHIQ", off)
            (sm,) = self.elf.unpack("<I", off + 28)
            (flags,) = self.elf.unpack("<Q", off + 40)
            if header < _ENTRY_FIXED or off + header + payload > end:
                raise UnreadableBinary(f"{self.elf.path}: corrupt fat binary entry at byte {off}")
            self.entries += 1
            if kind == KIND_ELF:
                self.sass.add(Arch.from_entry(sm, flags))
            elif kind == KIND_PTX:
                self.ptx.add(Arch.from_entry(sm, flags))
            off += header + payload

    def result(self) -> DeviceCode:
        return DeviceCode(frozenset(self.sass), frozenset(self.ptx), self.containers, self.entries)


def read_elf(elf: ElfFile) -> DeviceCode:
    """The device code in an opened ELF: its fat-binary sections, or, for a file
    without a section table, every container found by scanning it."""
    walk = _Walk(elf)
    sections = elf.named(FATBIN_SECTION)
    if sections:
        for s in sections:
            walk.region(s.offset, s.offset + s.size)
    elif not elf.sections:
        walk.region(0, elf.size)
    return walk.result()


def read_device_code(path: Path) -> DeviceCode:
    """The architectures ``path`` carries code for (:class:`UnreadableBinary` if it cannot be read)."""
    with open_elf(path) as elf:
        return read_elf(elf)
