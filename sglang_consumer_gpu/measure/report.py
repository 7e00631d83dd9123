"""How a measurement run is written down: an aligned text table and a JSON document written
atomically (``selftest`` and ``bench`` rewrite theirs after every case, so a reader -- or an
interrupted run -- never sees half a file)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def table(rows: Sequence[Sequence[str]], head: Sequence[str], width: int = 60) -> str:
    """Aligned plain-text columns; cells longer than ``width`` are cut with an ellipsis, except the last column."""
    cut = [[c if i == len(head) - 1 or len(c) <= width else c[: width - 1] + "…" for i, c in enumerate(r)]
           for r in [head, *rows]]  # fmt: skip
    widths = [max(len(r[i]) for r in cut) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cut)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
