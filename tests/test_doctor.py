"""`doctor`: the static report (installed source, no SGLang import) and the
`--import` proof agree, for the GPUs the plugin exists for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import RTX_4090, run_python_json

RTX_5090 = "NVIDIA GeForce RTX 5090"
#: static verdict -> the status the same patch gets when applied for real
SAME = {
    "will apply": "applied",
    "already fixed upstream": "already fixed upstream",
    "not needed on this GPU": "not needed on this GPU",
}


def _doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    return subprocess.run(
        [sys.executable, "-m", "sglang_consumer_gpu", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**full, **(env or {})},
    )


@pytest.fixture(scope="module")
def rtx_4090_import() -> dict:
    proc = _doctor("--gpu", RTX_4090, "--json", "--import")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_doctor_for_virtual_rtx_4090_json(rtx_4090_import) -> None:
    data = rtx_4090_import
    assert data["gpu"]["name"] == RTX_4090
    assert data["gpu"]["capability"] == [8, 9]
    assert data["gpu"]["smem_per_block_optin"] == 101376
    assert data["gpu_is_virtual"] is True
    assert data["versions"]["sglang"] == "0.5.23" and data["sglang_coverage"]["covered"]
    assert data["versions"]["triton"] and data["versions"]["torch"] and data["versions"]["sgl-kernel"]
    act = data["activation"]
    assert (
        act["enabled"]
        and act["entry_point_registered"]
        and act["pth_files"]
        and act["pth_ran_in_this_process"]
    )
    assert act["sglang_has_plugin_group"]
    assert data["patches"], "no patches registered"
    assert data["patches"]["moe-config-lookup"]["status"] == "will apply"
    assert data["patches_in_this_process"]["moe-config-lookup"]["status"] == "applied"
    assert data["advice"] == []


def test_static_report_matches_applying_for_real(rtx_4090_import) -> None:
    """The fast answer is the one the patches give when SGLang is imported."""
    static, real = rtx_4090_import["patches"], rtx_4090_import["patches_in_this_process"]
    assert set(static) == set(real)
    for name, p in static.items():
        assert SAME[p["status"]] == real[name]["status"], (name, p, real[name])


def test_static_doctor_does_not_import_sglang_or_torch() -> None:
    """What keeps `doctor` at about a second (farm-bench numbers: README)."""
    out = run_python_json(
        f"""
        import contextlib, io, json, sys
        from sglang_consumer_gpu import _pth, activation
        from sglang_consumer_gpu.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            main(["doctor", "--gpu", "{RTX_5090}"])
        out = {{m: m in sys.modules for m in ("sglang", "torch", "triton")}}
        # locating SGLang's files must not fire the first-import trigger either
        print(json.dumps({{**out, "armed": _pth.armed(), "paths": activation.active_paths()}}))
        """
    )
    assert out == {"sglang": False, "torch": False, "triton": False, "armed": True, "paths": []}


def test_doctor_for_rtx_5090_routes_int8_without_warnings() -> None:
    """Issue 14: the GPU the int8 patch exists for, on a machine without CUDA."""
    proc = _doctor("--gpu", RTX_5090, "--json", "--import")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    static = data["patches"]["int8-scaled-mm"]
    assert static["status"] == "will apply" and "int8_scaled_mm -> triton" in static["detail"]
    assert "`if _is_cuda:`" in static["detail"]
    real = data["patches_in_this_process"]["int8-scaled-mm"]
    assert real["status"] == "not needed on this GPU" and "`_is_cuda` holds" in real["detail"], real
    assert not any("Please report" in tip for tip in data["advice"]), data["advice"]
    assert "circular import" not in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if "sglang_consumer_gpu" in line], proc.stderr


def test_doctor_without_gpu_says_so_and_still_reports() -> None:
    proc = _doctor()
    assert proc.returncode == 0, proc.stderr
    assert "GPU: none visible" in proc.stdout
    assert "sglang 0.5.23" in proc.stdout
    assert "sglang.srt.plugins entry point: registered" in proc.stdout
    assert "Please report" not in proc.stdout and not proc.stderr.strip()


def test_off_switch_shows_every_patch_disabled() -> None:
    """Issue 14: `SGLANG_CONSUMER_GPU=0 doctor` said DISABLED, then every patch applied."""
    proc = _doctor("--gpu", RTX_4090, "--json", "--import", env={"SGLANG_CONSUMER_GPU": "0"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert not data["activation"]["enabled"] and data["activation"]["switch"] == "SGLANG_CONSUMER_GPU='0'"
    for where in ("patches", "patches_in_this_process"):
        assert {p["status"] for p in data[where].values()} == {"disabled"}, data[where]
    assert any("switched off" in tip for tip in data["advice"])


def test_unrecognised_switch_value_is_reported() -> None:
    proc = _doctor("--gpu", RTX_4090, env={"SGLANG_CONSUMER_GPU": "maybe"})
    assert proc.returncode == 0, proc.stderr
    assert "Activation: enabled (SGLANG_CONSUMER_GPU='maybe')" in proc.stdout
    assert "is not a recognised value, so the plugin stays ON" in proc.stdout


def test_doctor_rejects_unknown_gpu() -> None:
    proc = _doctor("--gpu", "RTX 9999")
    assert proc.returncode == 2
    assert "unknown GPU 'RTX 9999'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_extend_upstream_verdict_from_source_matches_sglang_under_virtual_gpu() -> None:
    """doctor compiles SGLang's extend-attention helper alone from the installed
    source; its verdict equals the imported helper's under the virtual GPU."""
    out = run_python_json(
        """
        import inspect, json
        import sglang.kernels.ops.attention.extend_attention as ext
        from sglang_consumer_gpu.hardware import find_gpu
        from sglang_consumer_gpu.families import on_gpu
        from sglang_consumer_gpu.patches import attention_extend as patch
        source = inspect.getsource(ext)
        out = {}
        for name in ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA L40S",
                     "NVIDIA GeForce RTX 5090", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"):
            spec = find_gpu(name)
            with on_gpu(spec, patched=False):
                live = patch.upstream_fixed(ext)
                tiles = [list(ext._get_block_sizes_for_extend_attention(lq, lv)) for lq, lv in patch.HEAD_DIMS]
            helper = patch.function_from_source(source, patch.ATTR, patch.static_env(spec))
            out[name] = [live, patch.upstream_fixed_from_source(spec, source),
                         tiles == [list(helper(lq, lv)) for lq, lv in patch.HEAD_DIMS]]
        print(json.dumps(out))
        """
    )
    for name, (live, static, same_tiles) in out.items():
        assert same_tiles and live == static, (name, live, static)
    assert out[RTX_4090][0] is True  # SGLang 0.5.23's own sm_89 branch fits
