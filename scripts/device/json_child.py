"""A device script's section in a fresh interpreter: its environment is the child's alone (an
emulation, the plugin switched off), and its last stdout line is one JSON document."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

#: Variables a child inherits only when its section sets them: the plugin's switches and emulations,
#: and Triton's architecture override.
OWN_PREFIXES = ("SGLANG_CONSUMER_GPU", "TRITON_OVERRIDE")


def run_json(argv: list[str], env: dict[str, str] | None = None, timeout: int = 240, stderr_chars: int = 1500) -> Any:
    """Run ``argv`` with this process's environment minus :data:`OWN_PREFIXES`, plus ``env``; the JSON
    of its last stdout line (a dict gets ``_s``, its seconds, and the last lines of stderr), or
    ``{"error": ...}`` saying why there is none."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    full.update(env or {})
    t0 = time.time()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=full, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = p.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"rc {p.returncode}", "stderr": p.stderr[-stderr_chars:]}
    if isinstance(out, dict):
        out["_s"] = round(time.time() - t0, 1)
        if p.stderr.strip():
            out["_stderr_tail"] = p.stderr.strip().splitlines()[-3:]
    return out
