"""Which GPU architectures the installed torch, sgl-kernel, Triton and FlashInfer carry
(sglang_consumer_gpu.builds), read from the real wheels in this environment, checked against
NVIDIA's cuobjdump, and `doctor`'s "Builds for <GPU>" section built on it."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import packaging
import pytest
from conftest import RTX_4090

from sglang_consumer_gpu.builds import releases, toolchains, tools
from sglang_consumer_gpu.builds.cache import cached
from sglang_consumer_gpu.builds.compat import ptx_runs_on, sass_runs_on, what_runs
from sglang_consumer_gpu.builds.elf import UnreadableBinary
from sglang_consumer_gpu.builds.fatbin import Arch, DeviceCode, read_device_code
from sglang_consumer_gpu.builds.items import MISSING, NO_CODE, OK, Binary, read_binary, release_fix
from sglang_consumer_gpu.builds.libraries import sgl_kernel_library
from sglang_consumer_gpu.builds.nvrtc import nvrtc_package
from sglang_consumer_gpu.builds.report import collect
from sglang_consumer_gpu.hardware import GpuSpec, find_gpu
from sglang_consumer_gpu.versions import installed_version, package_dirs

RTX_5090 = "NVIDIA GeForce RTX 5090"
FIXTURES = Path(__file__).parent / "fixtures" / "builds"
ROOT = Path(__file__).resolve().parent.parent
TORCH = package_dirs("torch")[0]
SGL_KERNEL = package_dirs("sgl_kernel")[0]
TRITON = package_dirs("triton")[0]


def _archs(text: str) -> frozenset[Arch]:
    return frozenset(Arch.parse(a) for a in text.split())


def _cuobjdump() -> str | None:
    bundled = TRITON / "backends" / "nvidia" / "bin" / "cuobjdump"  # Triton ships NVIDIA's own
    return shutil.which("cuobjdump") or (str(bundled) if bundled.is_file() else None)


def _listed(path: Path, what: str) -> list[str]:
    """``cuobjdump --list-elf|--list-ptx``: one ``<name>.<n>.sm_XY[a].cubin|ptx`` line per entry."""
    out = subprocess.run(
        [_cuobjdump(), f"--list-{what}", str(path)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    return re.findall(r"\.(sm_\d+[af]?)\.(?:cubin|ptx)$", out.stdout, re.M)


# the reader against cuobjdump, on the real wheels and the fixtures ---------------------------------------

_QUICK = [
    FIXTURES / "libmixed.so",
    FIXTURES / "libptx80.so",
    FIXTURES / "libsm86.so",
    TORCH / "lib" / "libtorch_cuda_linalg.so",
    TORCH / "lib" / "libtorch_nvshmem.so",
    *sorted(p for p in SGL_KERNEL.rglob("*.so")),
]
_SLOW = [TORCH / "lib" / "libtorch_cuda.so"]  # cuobjdump takes ~70 s on it (the reader 0.03-0.8 s)


@pytest.mark.skipif(_cuobjdump() is None, reason="no cuobjdump (neither on PATH nor in Triton's wheel)")
@pytest.mark.parametrize(
    "path",
    [*_QUICK, *(pytest.param(p, marks=pytest.mark.slow) for p in _SLOW)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_reader_agrees_with_cuobjdump(path: Path) -> None:
    """Same cubins and PTX, entry for entry (cuobjdump prints a family cubin sm_XYf as sm_XY)."""
    code = read_device_code(path)
    elf, ptx = _listed(path, "elf"), _listed(path, "ptx")
    assert {a.name.removesuffix("f") for a in code.sass} == set(elf)
    assert {a.name for a in code.ptx} == set(ptx)
    assert code.entries == len(elf) + len(ptx)


def test_fixtures_read_as_built() -> None:
    """tests/fixtures/builds/README.md: how each was built."""
    mixed = read_device_code(FIXTURES / "libmixed.so")
    assert mixed.sass == _archs("sm_86 sm_90a sm_120f") and mixed.ptx == _archs("sm_120")
    assert mixed.describe() == "SASS sm_86, sm_90a, sm_120f; PTX sm_120"
    assert read_device_code(FIXTURES / "libptx80.so") == DeviceCode(frozenset(), _archs("sm_80"), 1, 1)
    assert read_device_code(FIXTURES / "libsm86.so").sass == _archs("sm_86")


def test_sgl_kernel_sm90_library_has_hopper_cubins() -> None:
    """Any sgl-kernel's Hopper build carries sm_90 and the arch-specific sm_90a (wgmma) cubins."""
    code = read_device_code(SGL_KERNEL / "sm90" / "common_ops.abi3.so")
    assert {Arch(9, 0), Arch(9, 0, "a")} <= code.sass


@pytest.mark.parametrize(
    ("dist", "path"),
    [
        ("torch", TORCH / "lib" / "libtorch_cuda.so"),
        ("sglang-kernel", SGL_KERNEL / "sm100" / "common_ops.abi3.so"),
    ],
)
def test_installed_binaries_equal_their_release_row(dist: str, path: Path) -> None:
    """The pinned wheels installed here read as builds/releases.py records their PyPI wheels."""
    version = installed_version(dist)
    row = next((f for f in releases.rows(dist) if f.version == version), None)
    if row is None:
        pytest.skip(f"{dist} {version} has no row in builds/releases.py")
    code = read_device_code(path)
    assert code.sass == row.archs() and not code.ptx
    linked = read_binary(path).needed
    assert f"libcudart.so.{row.cuda}" in linked


def test_triton_ptxas_lists_its_gpu_names() -> None:
    """`ptxas --help` of Triton's own assemblers; Triton 3.8 runs ptxas-blackwell for sm_100+."""
    if installed_version("triton") != "3.8.0":
        pytest.skip("the expectations below are Triton 3.8's")
    low = tools.triton_ptxas(TRITON, 89, {})
    high = tools.triton_ptxas(TRITON, 120, {})
    assert low.path.name == "ptxas" and low.gpu_name == "sm_89" and low.variable == "TRITON_PTXAS_PATH"
    assert high.path.name == "ptxas-blackwell" and high.gpu_name == "sm_120a"
    assert high.variable == "TRITON_PTXAS_BLACKWELL_PATH"
    assert {"sm_89", "sm_90a", "sm_120a", "sm_121a"} <= tools.ptxas_targets(low.path).targets
    blackwell = tools.ptxas_targets(high.path)
    assert blackwell.release == "13.3" and "sm_120a" in blackwell.targets and "sm_50" not in blackwell.targets


# Triton 3.2's and 3.3's choice of assembler and --gpu-name (their compiler.py lines, from the wheels)
_TRITON_32 = """
def _path_to_binary(binary: str):
            suffix = 'a' if capability == 90 else ''
            ptxas_cmd = [ptxas, f'--gpu-name=sm_{capability}{suffix}']
"""
_TRITON_33 = """
@functools.lru_cache()
def get_ptxas(arch: int):
    name = "ptxas-blackwell" if arch >= 100 else "ptxas"
    return _path_to_binary(name)


def sm_arch_from_capability(capability: int):
    suffix = "a" if capability >= 90 else ""
"""


def test_triton_rules_from_older_compilers() -> None:
    """Triton 3.2 asks its CUDA 12.4 ptxas for `sm_120` (the user's `Value 'sm_120' is not defined`)."""
    assert tools._triton_rules(_TRITON_32, 120) == (False, "sm_120")
    assert tools._triton_rules(_TRITON_32, 90) == (False, "sm_90a")
    assert tools._triton_rules(_TRITON_33, 120) == (True, "sm_120a")
    assert tools._triton_rules(_TRITON_33, 89) == (False, "sm_89")


def test_parse_gpu_names_reads_only_the_gpu_name_option() -> None:
    text = (
        "--foo\n        Allowed values for this option:  'x_1'.\n"
        "--gpu-name <gpu name>    (-arch)\n        Specify name.\n"
        "        Allowed values for this option:  'compute_90','sm_89',\n        'sm_90a'.\n"
        "        Default value:  'sm_52'.\n"
    )
    assert tools.parse_gpu_names(text) == {"compute_90", "sm_89", "sm_90a"}


# CUDA's compatibility rules, for virtual GPUs ------------------------------------------------------------

SM = {name: GpuSpec.for_arch(int(name[3:-1]), int(name[-1])) for name in ("sm_80", "sm_86", "sm_89", "sm_90")}
SM |= {
    "sm_100": GpuSpec.for_arch(10, 0),
    "sm_120": GpuSpec.for_arch(12, 0),
    "sm_121": GpuSpec.for_arch(12, 1),
}


@pytest.mark.parametrize(
    ("cubin", "runs_on"),
    [
        ("sm_80", {"sm_80", "sm_86", "sm_89"}),  # same major, later minor
        ("sm_86", {"sm_86", "sm_89"}),  # not on the A100
        ("sm_89", {"sm_89"}),
        ("sm_90", {"sm_90"}),
        ("sm_90a", {"sm_90"}),
        ("sm_100f", {"sm_100"}),  # the family is major 10, not Blackwell as a whole
        ("sm_120", {"sm_120", "sm_121"}),
        ("sm_120a", {"sm_120"}),  # arch-specific: not even the sm_121 of the same family
        ("sm_120f", {"sm_120", "sm_121"}),
    ],
)
def test_cubin_compatibility(cubin: str, runs_on: set[str]) -> None:
    assert {name for name, spec in SM.items() if sass_runs_on(Arch.parse(cubin), spec.capability)} == runs_on


@pytest.mark.parametrize(
    ("ptx", "runs_on"),
    [
        ("sm_80", set(SM)),  # the driver JIT-compiles plain PTX for every later GPU
        ("sm_89", {"sm_89", "sm_90", "sm_100", "sm_120", "sm_121"}),
        ("sm_90a", {"sm_90"}),
        ("sm_120f", {"sm_120", "sm_121"}),
    ],
)
def test_ptx_compatibility(ptx: str, runs_on: set[str]) -> None:
    assert {name for name, spec in SM.items() if ptx_runs_on(Arch.parse(ptx), spec.capability)} == runs_on


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        ("NVIDIA GeForce RTX 3090", ("sass", "sm_86")),
        (RTX_4090, ("sass", "sm_86")),  # no sm_89 cubin: the sm_86 one runs
        ("sm_90", ("sass", "sm_90a")),  # the arch-specific cubin of exactly this GPU first
        (RTX_5090, ("sass", "sm_120f")),
        ("sm_121", ("sass", "sm_120f")),
    ],
)
def test_what_runs_picks_the_closest_cubin(gpu: str, expected: tuple[str, str]) -> None:
    code = read_device_code(FIXTURES / "libmixed.so")
    runs = what_runs(code, find_gpu(gpu))
    assert (runs.how, runs.arch.name if runs.arch else None) == expected


def test_what_runs_falls_back_to_ptx_then_to_nothing() -> None:
    ptx80 = read_device_code(FIXTURES / "libptx80.so")
    assert what_runs(ptx80, find_gpu(RTX_5090)).how == "ptx"
    mixed = read_device_code(FIXTURES / "libmixed.so")
    none = what_runs(mixed, GpuSpec.for_arch(10, 0))  # compute_120 PTX does not JIT for an older sm_100
    assert none.how == "none" and "no kernel image is available" in none.describe()


# corrupt files -----------------------------------------------------------------------------------------


def test_truncated_and_corrupt_files_are_unreadable_not_crashes(tmp_path: Path) -> None:
    data = (FIXTURES / "libmixed.so").read_bytes()
    cases = {
        "truncated.so": data[:4000],
        "empty.so": b"",
        "text.so": b"not a library at all\n" * 10,
        "elf32.so": data[:4] + b"\x01" + data[5:],
    }
    at = data.index(bytes.fromhex("50ed55ba")) + 16  # the first fat-binary entry
    bad_entry = bytearray(data)
    bad_entry[at + 4 : at + 8] = (8).to_bytes(4, "little")  # header size 8: smaller than any entry header
    cases["bad_entry.so"] = bytes(bad_entry)
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    messages = {}
    for name in cases:
        with pytest.raises(UnreadableBinary) as err:
            read_device_code(tmp_path / name)
        messages[name] = str(err.value)
        assert str(tmp_path / name) in messages[name]
    assert "truncated" in messages["truncated.so"]
    assert "empty file" in messages["empty.so"] and "not an ELF file" in messages["text.so"]
    assert "64-bit" in messages["elf32.so"] and "corrupt fat binary entry" in messages["bad_entry.so"]
    with pytest.raises(UnreadableBinary, match="No such file"):
        read_device_code(tmp_path / "absent.so")


# the cache ---------------------------------------------------------------------------------------------


def test_cache_reads_a_file_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "lib.so"
    target.write_bytes(b"one")
    calls = []

    def read(path: Path) -> dict:
        calls.append(path)
        return {"bytes": len(path.read_bytes())}

    assert cached("t", target, read) == {"bytes": 3} and cached("t", target, read) == {"bytes": 3}
    assert len(calls) == 1
    target.write_bytes(b"three")
    assert cached("t", target, read) == {"bytes": 5} and len(calls) == 2
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_CACHE_DIR", str(target))  # a file: nothing can be written
    assert cached("t", target, read) == {"bytes": 5}


# what to change, from the facts read from real wheels --------------------------------------------------


def test_release_facts_name_the_first_versions_with_sm_120() -> None:
    cap = find_gpu(RTX_5090).capability
    kernel = [f for f in releases.rows("sgl-kernel", "sglang-kernel") if f.runs_on(cap)]
    assert kernel[0].version == "0.3.9"
    assert not any(f.runs_on(cap) for f in releases.rows("sgl-kernel") if f.version in ("0.3.8", "0.3.5"))
    assert next(f.version for f in releases.rows("torch") if f.runs_on(cap)) == "2.8.0"
    assert next(f.version for f in releases.rows("triton") if f.accepts("sm_120a")) == "3.3.0"
    fix = release_fix(kernel, "0.3.5", "has sm_120 code")
    assert fix.startswith(
        "pip install sgl-kernel==0.3.9 (sgl_kernel-0.3.9-cp310-abi3-manylinux2014_x86_64.whl: "
        "sgl_kernel/common_ops.abi3.so has sm_120 code)"
    )
    assert (
        "SGLang 0.5.2 is the first release read that requires such a build (sgl-kernel==0.3.9.post2)" in fix
    )
    assert release_fix(kernel, "0.4.10", "has sm_120 code").startswith(
        "pip install --force-reinstall --no-deps sglang-kernel==0.4.10: the published wheel's"
    )
    assert release_fix(kernel, "0.3.5", "x", pinned="0.3.9.post2").startswith(
        "pip install sgl-kernel==0.3.9.post2"
    )
    assert (
        release_fix([], "1.0", "has sm_130 code")
        == "none of the releases read here (builds/releases.py) have sm_130 code"
    )


def test_triton_fix_for_triton_3_2_on_an_rtx_5090() -> None:
    """Triton 3.2 asks its CUDA 12.4 ptxas for sm_120; the fix must know what 3.3+ asks for too (sm_120a)."""
    choice = tools.PtxasChoice(
        TRITON / "backends" / "nvidia" / "bin" / "ptxas", "TRITON_PTXAS_PATH", "sm_120", False
    )
    fix = toolchains._triton_fix(choice, 120, "3.2.0")
    assert fix.startswith("pip install triton==3.3.0 (")
    assert "ptxas-blackwell knows sm_120 and sm_120a" in fix and "torch 2.7.0 requires triton==3.3.0" in fix
    assert "set TRITON_PTXAS_PATH to a newer ptxas: pip install 'nvidia-cuda-nvcc-cu12>=12.8.93'" in fix


def test_every_release_row_parses() -> None:
    for fact in releases.FACTS:
        fact.archs()
        assert fact.wheel.endswith(".whl") and fact.wheel.startswith(fact.dist.replace("-", "_") + "-")
        assert bool(fact.gpu_names) == bool(fact.release)


def test_nvrtc_of_a_cuda_12_sgl_kernel_next_to_a_cuda_13_torch() -> None:
    """`ImportError: libnvrtc.so.12: cannot open shared object file` on `import sgl_kernel`."""
    torch_core = read_binary(TORCH / "lib" / "libtorch_cuda.so")
    old = Binary(SGL_KERNEL / "common_ops.abi3.so", DeviceCode(_archs("sm_80")), ("libnvrtc.so.12",))
    pkg = nvrtc_package(torch_core, old, {})
    torch_item, sgl_item = pkg.items
    assert torch_item.status == OK and "its RUNPATH" in torch_item.detail
    if sgl_item.status == OK:
        pytest.skip(f"this machine has a CUDA 12 libnvrtc: {sgl_item.detail}")
    assert sgl_item.status == MISSING and "libnvrtc.so.12: cannot open shared object file" in sgl_item.detail
    assert "sglang-kernel 0.4.2 is the first CUDA 13 build read" in sgl_item.fix


def test_sgl_kernel_loads_sm90_on_hopper_and_sm100_elsewhere() -> None:
    """sgl_kernel/load_utils.py: `compute_capability == 90` -> sm90, any other GPU -> sm100."""
    source = (SGL_KERNEL / "load_utils.py").read_text()
    assert 'if compute_capability == 90:\n        ops_subdir = "sm90"' in source
    assert sgl_kernel_library(SGL_KERNEL, GpuSpec.for_arch(9, 0)).parent.name == "sm90"
    for gpu in (RTX_4090, RTX_5090, "sm_80"):
        assert sgl_kernel_library(SGL_KERNEL, find_gpu(gpu)).parent.name == "sm100"


def test_report_for_the_installed_stack_and_an_rtx_5090() -> None:
    report = collect(find_gpu(RTX_5090), {**os.environ, "TRITON_PTXAS_BLACKWELL_PATH": ""})
    assert report.problems == [], report.problems
    names = [p.name for p in report.packages]
    assert names == ["torch", "sglang-kernel", "triton", "flashinfer-python", "libnvrtc"]


# doctor ------------------------------------------------------------------------------------------------


def _doctor(*args: str, env: dict[str, str] | None = None, python_args: tuple[str, ...] = ()) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SGLANG_CONSUMER_GPU", "TRITON_PTXAS"))}
    proc = subprocess.run(
        [sys.executable, *python_args, "-m", "sglang_consumer_gpu", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**full, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return {"stdout": proc.stdout, "stderr": proc.stderr}


def _builds(*args: str, env: dict[str, str] | None = None, python_args: tuple[str, ...] = ()) -> dict:
    return json.loads(_doctor(*args, "--json", env=env, python_args=python_args)["stdout"])["builds"]


def _item(builds: dict, package: str, subject_start: str) -> dict:
    pkg = next(p for p in builds["packages"] if p["name"] == package)
    return next(i for i in pkg["items"] if i["subject"].startswith(subject_start))


@pytest.mark.parametrize(
    ("gpu", "cubin", "ptxas", "gpu_name"),
    [
        (RTX_5090, "sm_120a", "backends/nvidia/bin/ptxas-blackwell", "sm_120a"),
        (RTX_4090, "sm_89", "", "sm_89"),
    ],
)
def test_doctor_builds_section_against_the_installed_binaries(gpu, cubin, ptxas, gpu_name) -> None:
    builds = _builds("--gpu", gpu)
    spec = find_gpu(gpu)
    assert builds["gpu"] == gpu and builds["arch"] == spec.arch_name and builds["ok"]
    library = sgl_kernel_library(SGL_KERNEL, spec)
    core = _item(builds, "sglang-kernel", "sm100/common_ops.abi3.so (what sgl_kernel loads")
    assert core["status"] == OK and core["sass"] == [a.name for a in sorted(read_device_code(library).sass)]
    assert core["detail"].endswith(f"runs its {cubin} cubins")
    torch_item = _item(builds, "torch", "lib/libtorch_cuda.so")
    expected = what_runs(read_device_code(TORCH / "lib" / "libtorch_cuda.so"), spec)
    assert torch_item["status"] == OK and torch_item["detail"].endswith(f"runs its {expected.arch} cubins")
    tool = tools.triton_ptxas(TRITON, spec.arch, {})
    triton_item = _item(builds, "triton", ptxas or "backends/nvidia/bin/ptxas")
    assert triton_item["subject"] == str(tool.path.relative_to(TRITON)) and tool.gpu_name == gpu_name
    assert triton_item["status"] == OK and gpu_name in triton_item["targets"]
    assert _item(builds, "libnvrtc", "torch: lib/libtorch_cuda.so needs libnvrtc.so.")["status"] == OK


def test_doctor_prints_the_section() -> None:
    out = _doctor("--gpu", RTX_5090)["stdout"]
    section = out[
        out.index("Builds for NVIDIA GeForce RTX 5090 (sm_120), read from the installed binaries:") :
    ]
    for name in ("torch", "sglang-kernel", "triton", "flashinfer-python", "libnvrtc"):
        assert f"\n  {name} " in section
    assert "What to change" not in section


def _fake_site(tmp_path: Path, library: bytes) -> Path:
    """An sgl_kernel package ahead of the installed one on PYTHONPATH, with ``library`` as its sm100 build."""
    site = tmp_path / "site"
    (site / "sgl_kernel" / "sm100").mkdir(parents=True)
    (site / "sgl_kernel" / "__init__.py").write_text("")
    (site / "sgl_kernel" / "sm100" / "common_ops.abi3.so").write_bytes(library)
    return site


def test_doctor_names_the_fix_for_an_sgl_kernel_without_the_gpus_arch(tmp_path: Path) -> None:
    """A build of sgl-kernel's 0.4.10 with only sm_86 code (a source build for an RTX 3090)."""
    site = _fake_site(tmp_path, (FIXTURES / "libsm86.so").read_bytes())
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    builds = _builds("--gpu", RTX_5090, env=env)
    core = _item(builds, "sglang-kernel", "sm100/common_ops.abi3.so")
    assert not builds["ok"] and core["status"] == NO_CODE
    assert "no kernel image is available for execution on the device" in core["detail"]
    if installed_version("sglang-kernel") == "0.4.10":
        assert core["fix"].startswith(
            "pip install --force-reinstall --no-deps sglang-kernel==0.4.10: the published wheel's sgl_kernel/sm100/common_ops.abi3.so has sm_120 code"
        )
    assert _builds("--gpu", RTX_4090, env=env)["ok"]  # its sm_86 cubin runs on sm_89
    text = _doctor("--gpu", RTX_5090, env=env)["stdout"]
    assert "  What to change:\n    - sglang-kernel, sm100/common_ops.abi3.so (what sgl_kernel loads on sm_120): pip install" in text


def test_doctor_on_a_cpu_only_torch(tmp_path: Path) -> None:
    """`Torch not compiled with CUDA enabled`: a torch whose lib/ has no CUDA library."""
    site = tmp_path / "site"
    (site / "torch" / "lib").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("")
    (site / "torch" / "version.py").write_text("cuda: Optional[str] = None\n")
    shutil.copy(
        TORCH / "lib" / "libtorch_global_deps.so", site / "torch" / "lib"
    )  # a library without device code
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    builds = _builds("--gpu", RTX_4090, env=env)
    torch_pkg = next(p for p in builds["packages"] if p["name"] == "torch")
    assert torch_pkg["note"] == "(CPU-only build)"
    [item] = torch_pkg["items"]
    assert item["status"] == NO_CODE and "runs on the CPU only" in item["detail"]
    assert "--index-url https://download.pytorch.org/whl/cu128" in item["fix"]
    assert not any(p["name"] == "libnvrtc" and "torch/" in str(p) for p in builds["packages"])


def test_doctor_says_could_not_read_for_a_truncated_library(tmp_path: Path) -> None:
    site = _fake_site(tmp_path, (FIXTURES / "libmixed.so").read_bytes()[:3000])
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    out = _doctor("--gpu", RTX_5090, env=env)["stdout"]
    line = next(line for line in out.splitlines() if "sm100/common_ops.abi3.so" in line)
    assert line.split()[:3] == ["COULD", "NOT", "READ"] and "could not read:" in line and "truncated" in line


def test_doctor_with_no_packages_installed(tmp_path: Path) -> None:
    """`python -S`: no site-packages, so no torch, sgl_kernel, Triton or FlashInfer (only `packaging`)."""
    (tmp_path / "packaging").symlink_to(Path(packaging.__file__).parent)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "CUDA_HOME": str(tmp_path / "no-cuda")}
    builds = _builds("--gpu", RTX_5090, env=env, python_args=("-S",))
    statuses = {p["name"]: [i["status"] for i in p["items"]] for p in builds["packages"]}
    assert statuses == {
        "torch": [MISSING],
        "sglang-kernel": [MISSING],
        "triton": [MISSING],
        "flashinfer-python": [MISSING, MISSING],  # FlashInfer, and the nvcc JIT builds need
    }
    nvcc = _item(builds, "flashinfer-python", "nvcc for JIT builds")
    assert str(tmp_path / "no-cuda" / "bin" / "nvcc") in nvcc["subject"] and "CUDA_HOME" in nvcc["fix"]


def _script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_doctor_with_old_compilers(tmp_path: Path) -> None:
    """A CUDA 12.4-like ptxas named by TRITON_PTXAS_BLACKWELL_PATH, a CUDA 12.6-like nvcc under CUDA_HOME,
    and FLASHINFER_CUDA_ARCH_LIST without 12.0: each is named, with what to change."""
    ptxas = _script(
        tmp_path / "ptxas",
        'case "$1" in --version) echo "Cuda compilation tools, release 12.4, V12.4.131";;\n'
        "*) printf -- \"--gpu-name <gpu name>\\n  Allowed values for this option:  'sm_89','sm_90a'.\\n\";; esac\n",
    )
    (tmp_path / "cuda" / "bin").mkdir(parents=True)
    _script(
        tmp_path / "cuda" / "bin" / "nvcc",
        'case "$1" in --version) echo "Cuda compilation tools, release 12.6, V12.6.85";;\n'
        "*) echo compute_80; echo compute_89; echo compute_90;; esac\n",
    )
    env = {
        "TRITON_PTXAS_BLACKWELL_PATH": str(ptxas),
        "CUDA_HOME": str(tmp_path / "cuda"),
        "FLASHINFER_CUDA_ARCH_LIST": "8.9 9.0a",
    }
    builds = _builds("--gpu", RTX_5090, env=env)
    triton_item = _item(builds, "triton", str(ptxas))
    assert triton_item["status"] == NO_CODE
    assert "`ptxas fatal : Value 'sm_120a' is not defined for option 'gpu-name'`" in triton_item["detail"]
    assert triton_item["fix"].startswith(f"TRITON_PTXAS_BLACKWELL_PATH={ptxas} names a ptxas without sm_120a")
    nvcc = _item(builds, "flashinfer-python", "nvcc for JIT builds")
    assert nvcc["status"] == NO_CODE and "no compute_120" in nvcc["detail"]
    assert nvcc["fix"].startswith("install a CUDA toolkit 12.8+ (nvidia_cuda_nvcc_cu12-12.8.93")
    arch_list = _item(builds, "flashinfer-python", "FLASHINFER_CUDA_ARCH_LIST")
    assert arch_list["status"] == NO_CODE and "12.0" in arch_list["fix"]
