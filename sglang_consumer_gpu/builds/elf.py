"""The few parts of an ELF shared object the build checks need: its sections
(where the CUDA fat binaries are) and its dynamic entries (which ``libnvrtc``
it needs, and where it looks for it).

Read through ``mmap`` so a 1 GB ``libtorch_cuda.so`` costs only the pages
actually touched; every offset is checked against the file's size, so a
truncated or corrupt file gives :class:`UnreadableBinary`, never a bad read.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
_SHT_DYNAMIC = 6
_SHT_NOBITS = 8
_DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 1, 5, 15, 29


class UnreadableBinary(ValueError):
    """The file is not a readable 64-bit little-endian ELF (what doctor prints as "could not read")."""


@dataclass(frozen=True)
class Section:
    name: str
    kind: int  # sh_type
    address: int  # sh_addr: where it is mapped (dynamic entries point by address)
    offset: int  # sh_offset: where it is in the file
    size: int


@dataclass(frozen=True)
class Dynamic:
    """DT_NEEDED names in order, and the DT_RUNPATH (or DT_RPATH) search list, unexpanded."""

    needed: tuple[str, ...]
    runpath: tuple[str, ...]


class ElfFile:
    """Sections and dynamic entries of one mapped ELF64 file."""

    def __init__(self, data: mmap.mmap | bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.size = len(data)
        if self.size < 64 or data[:4] != ELF_MAGIC:
            raise UnreadableBinary(f"{path}: not an ELF file")
        if data[4] != 2 or data[5] != 1:
            raise UnreadableBinary(f"{path}: not a 64-bit little-endian ELF")
        self.sections = self._sections()

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        if offset < 0 or offset + struct.calcsize(fmt) > self.size:
            raise UnreadableBinary(
                f"{self.path}: truncated (offset {offset} is past the end, {self.size} bytes)"
            )
        return struct.unpack_from(fmt, self.data, offset)

    def _sections(self) -> list[Section]:
        (shoff,) = self.unpack("<Q", 0x28)
        shentsize, shnum, shstrndx = self.unpack("<HHH", 0x3A)
        if shoff == 0:
            return []  # no section table (stripped of it): the caller scans the file
        if shentsize < 64:
            raise UnreadableBinary(f"{self.path}: bad section header size {shentsize}")
        if shnum == 0 or shstrndx == 0xFFFF:  # extended numbering: the real values sit in section 0
            _, _, _, _, _, size0, link0 = self.unpack("<IIQQQQI", shoff)
            shnum = shnum or size0
            shstrndx = link0 if shstrndx == 0xFFFF else shstrndx
        raw = [self.unpack("<IIQQQQ", shoff + i * shentsize) for i in range(shnum)]
        if not 0 <= shstrndx < len(raw):
            raise UnreadableBinary(f"{self.path}: bad section name table index {shstrndx}")
        names_at = raw[shstrndx][4]
        out = []
        for name_off, kind, _flags, addr, offset, size in raw:
            if kind != _SHT_NOBITS and offset + size > self.size:
                raise UnreadableBinary(
                    f"{self.path}: truncated (a section ends at byte {offset + size}, the file has {self.size})"
                )
            out.append(Section(self._cstr(names_at + name_off), kind, addr, offset, size))
        return out

    def _cstr(self, offset: int) -> str:
        if not 0 <= offset < self.size:
            raise UnreadableBinary(f"{self.path}: string offset {offset} is past the end")
        end = self.data.find(b"\0", offset, min(self.size, offset + 4096))
        if end < 0:
            raise UnreadableBinary(f"{self.path}: unterminated string at {offset}")
        return bytes(self.data[offset:end]).decode("utf-8", "replace")

    def named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]

    def dynamic(self) -> Dynamic:
        dyn = next((s for s in self.sections if s.kind == _SHT_DYNAMIC), None)
        if dyn is None:
            return Dynamic((), ())
        entries = [self.unpack("<qQ", dyn.offset + i * 16) for i in range(dyn.size // 16)]
        strtab_addr = next((v for tag, v in entries if tag == _DT_STRTAB), None)
        strtab = next((s for s in self.sections if s.address == strtab_addr and s.address), None)
        if strtab is None:
            return Dynamic((), ())
        needed = tuple(self._cstr(strtab.offset + v) for tag, v in entries if tag == _DT_NEEDED)
        runpath = [self._cstr(strtab.offset + v) for tag, v in entries if tag == _DT_RUNPATH]
        rpath = [self._cstr(strtab.offset + v) for tag, v in entries if tag == _DT_RPATH]
        paths = (runpath or rpath)[:1]
        return Dynamic(needed, tuple(p for p in paths[0].split(":") if p) if paths else ())


@contextmanager
def open_elf(path: Path) -> Iterator[ElfFile]:
    """``path`` mapped read-only; :class:`UnreadableBinary` for anything that is not a readable ELF64."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                raise UnreadableBinary(f"{path}: empty file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                # the walk jumps from header to header: read-ahead would pull in the payloads between
                data.madvise(mmap.MADV_RANDOM)
                yield ElfFile(data, path)
    except OSError as exc:
        raise UnreadableBinary(f"{path}: {exc.strerror or exc}") from exc
