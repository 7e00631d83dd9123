"""Writable compile caches for the tools, settled before torch, Triton or SGLang is imported.

The tools compile kernels (Triton, for the oracle and on the GPU) and import SGLang, and
each of those writes a cache directory it does not let go of: Triton's ``~/.triton/cache``
(``TRITON_CACHE_DIR``, under ``TRITON_HOME``), and SGLang's ``~/.cache/sglang``
(``SGLANG_CACHE_DIR``), where ``import sglang`` points ``TRITON_CACHE_DIR``,
``TORCHINDUCTOR_CACHE_DIR`` and FlashInfer's workspace unless they are set
(``sglang.srt.environ.redirect_third_party_caches``). With a read-only HOME every compile
fails with a PermissionError, and ``import sglang`` dies in torch's ``cache_dir()``; the
next import of the half-imported torch module then reports "Artifact of type=precompile
already registered in mega-cache artifact factory", which names nothing the user can fix.
The plugin's own cache (``SGLANG_CONSUMER_GPU_CACHE_DIR``) only costs speed when it cannot
be written: compiles are not remembered.

So before a subcommand runs, each of these directories that cannot be written is moved,
by its environment variable, to one per-user directory under the temporary directory
(kept between runs, so the fallback still caches), with one warning line naming what
moved and what to set; with no usable temporary directory either, the command stops with
one line naming the directory and the variable. A variable the user set is moved too,
with the same line: a cache that cannot be written does not work for anyone.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from sglang_consumer_gpu import settings

logger = logging.getLogger(__name__)


def writable(path: Path) -> bool:
    """Whether ``path`` can be created (or is a directory) and written, without creating it."""
    p = path
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def _wanted() -> list[tuple[str, Path]]:
    """(variable, directory it names now) for every cache the tools write."""
    env = os.environ
    sglang = Path(env.get("SGLANG_CACHE_DIR") or "~/.cache/sglang").expanduser()
    triton_home = Path(env.get("TRITON_HOME") or "~").expanduser()
    triton = Path(env.get("TRITON_CACHE_DIR") or triton_home / ".triton" / "cache").expanduser()
    out = [("SGLANG_CACHE_DIR", sglang), ("TRITON_CACHE_DIR", triton)]
    if env.get("TORCHINDUCTOR_CACHE_DIR"):  # unset: torch's default is the temporary directory
        out.append(("TORCHINDUCTOR_CACHE_DIR", Path(env["TORCHINDUCTOR_CACHE_DIR"]).expanduser()))
    out.append((settings.CACHE_DIR, settings.cache_root()))
    return out


def _fallback_root() -> Path:
    """``$TMPDIR/sglang-consumer-gpu-<uid>``, private to this user (another user's directory of
    that name is never used); raises OSError when there is none to be had."""
    base = Path(tempfile.gettempdir())  # FileNotFoundError when no temporary directory is usable
    root = base / f"sglang-consumer-gpu-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or not writable(root):
        return Path(tempfile.mkdtemp(prefix="sglang-consumer-gpu-", dir=base))
    return root


def ensure_writable_caches() -> None:
    """Point every cache directory that cannot be written at a temporary one (one warning line).

    Raises ValueError (bad input: the environment) when no temporary directory can be written.
    """
    blocked = [(var, path) for var, path in _wanted() if not writable(path)]
    if not blocked:
        return
    try:
        root = _fallback_root()
    except OSError as exc:
        var, path = blocked[0]
        raise ValueError(
            f"cannot write the cache directory {path} and no temporary directory is usable ({exc}); "
            f"set {var} to a writable directory"
        ) from None
    if settings.CACHE_DIR in dict(blocked) and not os.environ.get(settings.USER_MOE_CONFIG_DIR):
        # Fused-MoE configs tuned earlier are still read where they are; only the compile cache moves.
        os.environ[settings.USER_MOE_CONFIG_DIR] = str(settings.user_moe_config_dir())
    for var, _ in blocked:
        os.environ[var] = str(root / var.lower())
    logger.warning(
        "cannot write %s: caching under %s for this run (set %s to writable directories to choose where)",
        ", ".join(str(path) for _, path in blocked),
        root,
        ", ".join(var for var, _ in blocked),
    )
