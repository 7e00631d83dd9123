"""The .pth must land at the root of site-packages for both install modes."""

from __future__ import annotations

import site
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_environment_has_pth() -> None:
    dirs = [Path(d) for d in [*site.getsitepackages(), site.getusersitepackages()]]
    pth = [d / "sglang_consumer_gpu.pth" for d in dirs if (d / "sglang_consumer_gpu.pth").is_file()]
    assert pth, f"sglang_consumer_gpu.pth not in {dirs}"
    assert pth[0].read_text().strip() == "import sglang_consumer_gpu._pth"


def test_wheel_has_pth_at_root_and_entry_point(plugin_wheel: Path) -> None:
    with zipfile.ZipFile(plugin_wheel) as zf:
        names = zf.namelist()
        assert "sglang_consumer_gpu.pth" in names
        ep = next(n for n in names if n.endswith("entry_points.txt"))
        text = zf.read(ep).decode()
    assert "[sglang.srt.plugins]" in text and "sglang_consumer_gpu.activation:entry_point" in text
