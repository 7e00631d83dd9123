from __future__ import annotations

import json
import subprocess
import sys

from conftest import RTX_4090


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sglang_consumer_gpu", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_doctor_for_virtual_rtx_4090_json() -> None:
    proc = _doctor("--gpu", RTX_4090, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["gpu"]["name"] == RTX_4090
    assert data["gpu"]["capability"] == [8, 9]
    assert data["gpu"]["smem_per_block_optin"] == 101376
    assert data["gpu_is_virtual"] is True
    assert data["versions"]["sglang"] == "0.5.23"
    assert data["versions"]["triton"] and data["versions"]["torch"] and data["versions"]["sgl-kernel"]
    act = data["activation"]
    assert (
        act["enabled"]
        and act["entry_point_registered"]
        and act["pth_files"]
        and act["pth_ran_in_this_process"]
    )
    assert data["patches"], "no patches registered"
    for name, p in data["patches"].items():
        assert p["status"] in ("applied", "already fixed upstream", "not needed on this GPU"), (name, p)
    assert data["patches"]["moe-config-lookup"]["status"] == "applied"


def test_doctor_without_gpu_says_so_and_still_reports() -> None:
    proc = _doctor()
    assert proc.returncode == 0, proc.stderr
    assert "GPU: none visible" in proc.stdout
    assert "sglang 0.5.23" in proc.stdout
    assert "sglang.srt.plugins entry point: registered" in proc.stdout


def test_doctor_rejects_unknown_gpu() -> None:
    proc = _doctor("--gpu", "RTX 9999")
    assert proc.returncode == 2
    assert "unknown GPU 'RTX 9999'" in proc.stderr and "NVIDIA GeForce RTX 4090" in proc.stderr
    assert "Traceback" not in proc.stderr
