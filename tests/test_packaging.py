"""The .pth must land at the root of site-packages for both install modes."""

from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def test_installed_environment_has_pth() -> None:
    dirs = [Path(d) for d in [*site.getsitepackages(), site.getusersitepackages()]]
    pth = [d / "sglang_consumer_gpu.pth" for d in dirs if (d / "sglang_consumer_gpu.pth").is_file()]
    assert pth, f"sglang_consumer_gpu.pth not in {dirs}"
    assert pth[0].read_text().strip() == "import sglang_consumer_gpu._pth"


def test_wheel_has_pth_at_root_and_entry_point(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("sglang_consumer_gpu-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "sglang_consumer_gpu.pth" in names
        ep = next(n for n in names if n.endswith("entry_points.txt"))
        text = zf.read(ep).decode()
    assert "[sglang.srt.plugins]" in text and "sglang_consumer_gpu.activation:entry_point" in text


def test_installing_the_plugin_never_changes_sglang(tmp_path: Path) -> None:
    """The wheel requires neither sglang nor torch/triton (pip would up- or downgrade
    them to satisfy a bound); the covered range is an opt-in extra whose bounds
    are versions.COVERED_SGLANG."""
    pytest.importorskip("hatchling")
    from sglang_consumer_gpu.versions import COVERED_SGLANG

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("sglang_consumer_gpu-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [
        Requirement(line.split(":", 1)[1]) for line in meta.splitlines() if line.startswith("Requires-Dist:")
    ]
    base = {r.name for r in requires if r.marker is None}
    assert base and not base & {"sglang", "torch", "triton"}, base
    (extra,) = [
        r for r in requires if r.name == "sglang" and r.marker and r.marker.evaluate({"extra": "sglang"})
    ]
    assert extra.specifier == SpecifierSet(COVERED_SGLANG)
