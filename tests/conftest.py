"""Shared test helpers. Subprocess tests are how activation is tested: a .pth
file and an import watcher only act at interpreter start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

#: In this process SGLang is monkeypatched by tests, which the answer cache's key cannot see: the
#: tools ask SGLang every time here (tests/test_answer_cache.py turns it on where it is tested;
#: subprocesses drop the plugin's variables and use it).
os.environ["SGLANG_CONSUMER_GPU_ANSWER_CACHE"] = "0"

RTX_4090 = "NVIDIA GeForce RTX 4090"
#: A valid fused-MoE config entry that fits every ~99 KB GPU (test config files are made of it).
GOOD = {
    "BLOCK_SIZE_M": 16,
    "BLOCK_SIZE_N": 64,
    "BLOCK_SIZE_K": 128,
    "GROUP_SIZE_M": 1,
    "num_warps": 4,
    "num_stages": 3,
}


def run_python(
    code: str | tuple[str, ...], env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (a snippet, or a tuple of snippets run in order) in a fresh
    interpreter of this environment (site-packages, .pth files and all)."""
    parts = (code,) if isinstance(code, str) else code
    source = "\n".join(textwrap.dedent(p).strip("\n") for p in parts)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def run_python_json(
    code: str | tuple[str, ...], env: dict[str, str] | None = None, timeout: int = 300
) -> Any:
    """Like :func:`run_python`; the code prints one JSON document as its last stdout line."""
    proc = run_python(code, env, timeout)
    if proc.returncode != 0:
        pytest.fail(f"subprocess failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def plugin_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel .`` builds from this checkout (built once per session)."""
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("sglang_consumer_gpu-*.whl")
    return wheel


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An empty directory of the user's tuned fused-MoE configs (no ``SGLANG_MOE_CONFIG_DIR``), with
    the lookup's cache cleared around the test: the config-lookup tests write their files there."""
    from sglang_consumer_gpu.moe import lookup

    monkeypatch.setenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR", str(tmp_path / "user"))
    monkeypatch.delenv("SGLANG_MOE_CONFIG_DIR", raising=False)
    (tmp_path / "user").mkdir()
    lookup.clear_cache()
    yield tmp_path / "user"
    lookup.clear_cache()
