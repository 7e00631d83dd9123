"""What a tuning run has learned, on disk, and the lock that keeps a second run off its output.

**State.** One JSON file per output file (``.tune-moe/<config file>.state.json`` next to it):
every single timing per batch size, the configs that do not fit or do not compile, the kernel
variants compiled, the finished batch sizes and the counters. It is written atomically after
every wave and every finished batch size; a rerun of the same command loads it and continues
(the search recomputes its next step from what is known, and Triton's on-disk cache serves the
kernels compiled before). It carries a fingerprint of everything the timings depend on -- the
shape, dtype, batch sizes, target GPU, the GPU timed on, Triton, SGLang, the tuner's version --
and a state with another fingerprint is ignored. After the config file is written the state is
removed: a finished result lives in the config file and its sidecar, and the next run tunes
afresh.

**Lock.** ``fcntl.flock`` on ``.tune-moe/<config file>.lock``, taken without waiting: a second
tuner writing the same file stops with a message naming the holder's pid. The kernel releases
the lock when the holder exits, however it exits, so no stale lock survives a crash.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.moe.lookup import TUNE_DIR

#: Bump when the search changes what a saved state means.
TUNER_VERSION = 1


class LockedError(RuntimeError):
    """Another tuner holds the output."""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one:
    a temporary file in the same directory, flushed to disk, renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # an ordinary file (mkstemp makes it private)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def side_path(config_file: Path, suffix: str) -> Path:
    """``<dir>/.tune-moe/<config file name><suffix>``."""
    return config_file.parent / TUNE_DIR / f"{config_file.name}{suffix}"


@dataclass
class TuneState:
    """See the module docstring. ``timed[M][config] = [us, eager estimate us, early-exited]``."""

    fingerprint: dict[str, Any]
    timed: dict[int, dict[str, list[Any]]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    compiled: set[str] = field(default_factory=set)
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": TUNER_VERSION,
                "fingerprint": self.fingerprint,
                "timed": {str(m): v for m, v in sorted(self.timed.items())},
                "failed": self.failed,
                "compiled": sorted(self.compiled),
                "finished": {str(m): v for m, v in sorted(self.finished.items())},
                "counters": self.counters,
                "notes": self.notes,
            },
            indent=1,
            sort_keys=True,
        )

    def save(self, path: Path) -> None:
        write_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path, fingerprint: dict[str, Any]) -> tuple[TuneState, str]:
        """(the saved state if it is for ``fingerprint``, else a fresh one; what happened)."""
        fresh = cls(fingerprint)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return fresh, "new"
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return fresh, f"ignored unreadable state {path} ({type(exc).__name__})"
        if not isinstance(doc, dict) or doc.get("format") != TUNER_VERSION:
            return fresh, f"ignored state {path} of another tuner version"
        if doc.get("fingerprint") != json.loads(json.dumps(fingerprint, sort_keys=True)):
            return fresh, f"ignored state {path}: it was for another shape, GPU or version"
        try:
            state = cls(
                fingerprint,
                timed={int(m): {str(k): list(v) for k, v in d.items()} for m, d in doc["timed"].items()},
                failed={str(k): str(v) for k, v in doc["failed"].items()},
                compiled={str(k) for k in doc["compiled"]},
                finished={int(m): dict(v) for m, v in doc["finished"].items()},
                counters={str(k): float(v) for k, v in doc["counters"].items()},
                notes=[str(n) for n in doc["notes"]],
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return fresh, f"ignored malformed state {path}"
        done = len(state.finished)
        return (
            state,
            f"resumed from {path} ({sum(map(len, state.timed.values()))} timings, {done} batch sizes done)",
        )


@contextlib.contextmanager
def output_lock(config_files: list[Path]) -> Iterator[None]:
    """Hold the lock of every output file for the block (see the module docstring)."""
    import fcntl

    held: list[int] = []
    try:
        for cf in config_files:
            path = side_path(cf, ".lock")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise LockedError(
                        f"another tune-moe (pid {holder}) is writing {cf}; wait for it to finish "
                        "or give this run another --output"
                    ) from None
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            held.append(fd)
        yield
    finally:
        for fd in held:
            os.close(fd)
