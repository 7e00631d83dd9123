"""What the safety net did, per process, in files ``doctor`` reads.

SGLang runs its model in spawned scheduler processes, and ``doctor`` runs in
yet another one, so each process writes its own small JSON file:
``<cache>/safety/<tree>/<pid>.json`` (``<cache>`` is
:func:`sglang_consumer_gpu.settings.cache_root`). ``<tree>`` names the process
tree: the first process that installs the safety net sets
:data:`TREE_ENV` in its environment, and the processes it starts later
(SGLang's schedulers) inherit it. A file is rewritten atomically when its
process records something new, which happens once per kernel decision, never
per launch. Trees whose files are all older than :data:`KEEP_DAYS` are
removed when a new tree starts writing.

For ``doctor``: :func:`report` (JSON-ready) and :func:`lines` (text).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sglang_consumer_gpu import settings

logger = logging.getLogger("sglang_consumer_gpu")

#: Process-tree id, set by the first process of a tree that installs the safety net.
TREE_ENV = "SGLANG_CONSUMER_GPU_SAFETY_TREE"
KEEP_DAYS = 7

FITTED = "fitted"
FAILED = "failed"

_lock = threading.Lock()
_records: dict[tuple[Any, ...], Intervention] = {}
_pruned: list[bool] = []


@dataclass
class Intervention:
    """One decision of the safety net for one kernel configuration.

    ``before``: the launch's ``num_stages``/``num_warps`` and the tile
    parameters a rule may change; ``after``: what ran instead (empty when
    nothing fitted). ``specializations``: how many of the kernel's Triton
    specializations (argument dtypes/alignment) took this decision.
    """

    kernel: str
    module: str
    outcome: str  # FITTED or FAILED
    before: dict[str, Any]
    after: dict[str, Any]
    required: int
    fitted: int | None
    limit: int
    message: str
    specializations: int = 1
    first_seen: float = field(default_factory=time.time)

    def key(self) -> tuple[Any, ...]:
        return (
            self.module,
            self.kernel,
            self.outcome,
            tuple(sorted(self.before.items())),
            tuple(sorted(self.after.items())),
            self.limit,
        )


def tree_id() -> str:
    """This process tree's id (set on first use, inherited by child processes)."""
    tree = os.environ.get(TREE_ENV)
    if not tree:
        tree = f"{int(time.time())}-{os.getpid()}"
        os.environ[TREE_ENV] = tree
    return tree


def state_dir() -> Path:
    return settings.cache_root() / "safety"


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    return ticks is None or _start_ticks(pid) in (None, ticks)


def record(iv: Intervention) -> Intervention:
    """Add ``iv`` (or count one more specialization of an equal one) and rewrite this process's file."""
    with _lock:
        existing = _records.get(iv.key())
        if existing is not None:
            existing.specializations += 1
            iv = existing
        else:
            _records[iv.key()] = iv
        snapshot = [asdict(r) for r in _records.values()]
    _write(snapshot)
    return iv


def local() -> list[Intervention]:
    """This process's decisions."""
    with _lock:
        return list(_records.values())


def _write(snapshot: list[dict[str, Any]]) -> None:
    try:
        tree = tree_id()
        directory = state_dir() / tree
        directory.mkdir(parents=True, exist_ok=True)
        _prune_once(directory.parent, keep=tree)
        pid = os.getpid()
        doc = {
            "pid": pid,
            "ppid": os.getppid(),
            "start_ticks": _start_ticks(pid),
            "argv": " ".join(sys.argv)[:300],
            "updated": time.time(),
            "interventions": snapshot,
        }
        target = directory / f"{pid}.json"
        tmp = directory / f".{pid}.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, target)
    except OSError as exc:  # a read-only cache must not matter to SGLang
        logger.debug("sglang-consumer-gpu: cannot write safety-net state: %s", exc)


def _prune_once(root: Path, keep: str) -> None:
    if _pruned:
        return
    _pruned.append(True)
    cutoff = time.time() - KEEP_DAYS * 86400
    for tree in root.iterdir():
        if tree.name == keep or not tree.is_dir():
            continue
        with contextlib.suppress(OSError):
            if all(f.stat().st_mtime < cutoff for f in tree.iterdir()):
                shutil.rmtree(tree, ignore_errors=True)


def _latest_tree(root: Path) -> str | None:
    best: tuple[float, str] | None = None
    with contextlib.suppress(OSError):
        for tree in root.iterdir():
            if not tree.is_dir():
                continue
            mtimes = [f.stat().st_mtime for f in tree.glob("*.json")]
            if mtimes and (best is None or max(mtimes) > best[0]):
                best = (max(mtimes), tree.name)
    return best[1] if best else None


def report(tree: str | None = None) -> dict[str, Any]:
    """The interventions of one process tree: ``tree``, else this process's
    tree when it has recorded any, else the tree that wrote last.

    ``{"tree", "processes": [{"pid", "alive", "argv"}], "interventions": [... with "pid"]}``;
    ``tree`` is None when nothing was ever recorded.
    """
    root = state_dir()
    if tree is None:
        mine = os.environ.get(TREE_ENV)
        tree = mine if mine and (root / mine).is_dir() else _latest_tree(root)
    out: dict[str, Any] = {"tree": tree, "directory": str(root / tree) if tree else None}
    processes: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    if tree:
        for path in sorted((root / tree).glob("*.json")):
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            pid = int(doc.get("pid", 0))
            alive = _alive(pid, doc.get("start_ticks"))
            processes.append({"pid": pid, "alive": alive, "argv": doc.get("argv", "")})
            for iv in doc.get("interventions", []):
                found.append({**iv, "pid": pid, "alive": alive})
    out["processes"] = processes
    out["interventions"] = found
    return out


def interventions(tree: str | None = None) -> list[dict[str, Any]]:
    """Shorthand for ``report(tree)["interventions"]``."""
    return report(tree)["interventions"]


def describe(iv: dict[str, Any]) -> str:
    """One line for one intervention."""
    where = f"pid {iv.get('pid')}" + ("" if iv.get("alive", True) else ", exited")
    spec = iv.get("specializations", 1)
    count = f", {spec} specializations" if spec > 1 else ""
    if iv["outcome"] == FITTED:
        changes = ", ".join(
            f"{k}={v} (was {iv['before'].get(k)})" for k, v in iv["after"].items() if iv["before"].get(k) != v
        )
        return (
            f"{iv['kernel']}: needed {iv['required']} B > {iv['limit']} B; ran with {changes}, "
            f"{iv['fitted']} B ({where}{count})"
        )
    return f"{iv['kernel']}: needed {iv['required']} B > {iv['limit']} B; nothing fitted, the launch failed ({where}{count})"


def lines(rep: dict[str, Any] | None = None) -> list[str]:
    """Text for ``doctor``: a header line, then one line per intervention."""
    rep = report() if rep is None else rep
    if not rep["tree"]:
        return ["safety net: no interventions recorded"]
    ivs = rep["interventions"]
    alive = sum(p["alive"] for p in rep["processes"])
    head = (
        f"safety net: {len(ivs)} intervention(s) in process tree {rep['tree']} "
        f"({len(rep['processes'])} process(es), {alive} running)"
    )
    return [head, *(describe(iv) for iv in ivs)]
