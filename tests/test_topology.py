"""Multi-GPU boxes: the decisions on topologies built by hand, SGLang 0.5.23's own start-up code
they follow, the NVML reader against a fake nvidia-ml-py, the NCCL reader against library files,
and what ``doctor`` and ``doctor --model`` print (docs/multigpu.md)."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest
from conftest import run_python, run_python_json

from sglang_consumer_gpu.cli import main
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.planner.multigpu import box_for
from sglang_consumer_gpu.topology import (
    FAIL,
    INFO,
    RISK,
    GpuInfo,
    Layout,
    NcclLibrary,
    PeerLink,
    Topology,
    assumed_topology,
    diagnose,
    installed_nccl,
)
from sglang_consumer_gpu.topology.assumed import assumed_link
from sglang_consumer_gpu.topology.diagnose import memory_balance
from sglang_consumer_gpu.topology.model import GIB
from sglang_consumer_gpu.topology.nccl import NCCL_WHEELS, embedded_version
from sglang_consumer_gpu.topology.nvml import iommu_mode

FIX = Path(__file__).parent / "fixtures" / "models"
RTX_4090, RTX_3090, RTX_5090 = "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 5090"
NEW_NCCL = NcclLibrary(
    "2.27.3", "12.8", None, "nvidia-nccl-cu12 wheel", "nvidia-nccl-cu12==2.27.3", "nvidia-nccl-cu12"
)


def _box(
    names: list[str],
    free_gib: list[float] | None = None,
    *,
    nvlink: bool = False,
    peer: bool | None = False,
    iommu: str | None = None,
) -> Topology:
    """A live-looking box: every pair linked the same way."""
    specs = [find_gpu(n) for n in names]
    gpus = tuple(
        GpuInfo(i, s, s.memory_bytes, int(free_gib[i] * GIB) if free_gib else s.memory_bytes - GIB)
        for i, s in enumerate(specs)
    )
    links = tuple(
        PeerLink(
            a, b, nvlink=nvlink, p2p_read=peer, p2p_write=peer, path="PHB", nvlinks=4 if nvlink else None
        )
        for a in range(len(gpus))
        for b in range(a + 1, len(gpus))
    )
    return Topology(gpus, links, "NVML", iommu=iommu)


def _areas(issues, severity: str) -> list[str]:
    return [i.area for i in issues if i.severity == severity]


# --- the decisions, on constructed boxes -------------------------------------------------------


def test_two_rtx_4090_over_pcie_without_peer_access() -> None:
    """SGLang tries custom all-reduce, CUDA IPC fails, it falls back to NCCL: a note, not a risk."""
    box = _box([RTX_4090, RTX_4090])
    issues = diagnose(box, Layout(tp=2), NEW_NCCL, {})
    assert [i.severity for i in issues] == [INFO]
    (note,) = issues
    assert "peer access is not supported between these two devices" in note.text and "NCCL" in note.text
    assert "--disable-custom-all-reduce" in note.fix
    # the user's flag wins: nothing left to say; SGLang's own P2P test gives another note
    assert diagnose(box, Layout(tp=2, custom_all_reduce=False), NEW_NCCL, {}) == []
    tested = diagnose(box, Layout(tp=2, p2p_check=True), NEW_NCCL, {})
    assert len(tested) == 1 and "--enable-p2p-check" in tested[0].text and "CUDART" not in tested[0].text
    # one GPU of the box: no NCCL, no all-reduce
    assert diagnose(box, Layout(tp=1), NEW_NCCL, {}) == []


def test_two_rtx_3090_with_an_nvlink_bridge() -> None:
    box = _box([RTX_3090, RTX_3090], nvlink=True, peer=True)
    assert diagnose(box, Layout(tp=2), NEW_NCCL, {}) == []
    assert box.links[0].describe() == "NVLink x4" and box.links[0].peer_access is True


def test_rtx_4090_and_rtx_3090_with_a_desktop_on_one() -> None:
    """Mixed GPUs, and a display holding memory on the 4090: SGLang's balance check fails the launch."""
    box = _box([RTX_4090, RTX_3090], [19.56, 23.56])
    issues = diagnose(box, Layout(tp=2), NEW_NCCL, {})
    assert _areas(issues, FAIL) == ["memory"] and issues[0].severity == FAIL
    assert (
        '"The memory capacity is unbalanced. Some GPUs may be occupied by other processes."' in issues[0].text
    )
    assert "SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK=0" in issues[0].fix
    assert "mixed GPUs" in _areas(issues, INFO) and "sm_86" in issues[-1].text
    # the environment variable turns SGLang's error into a warning, and the verdict with it
    relaxed = diagnose(box, Layout(tp=2), NEW_NCCL, {"SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK": "0"})
    assert FAIL not in {i.severity for i in relaxed} and "memory" in _areas(relaxed, INFO)
    # pipeline parallelism alone does not run the check (SGLang checks only when --tp > 1)
    assert memory_balance(box, Layout(pp=2), {}) == []
    # close to the line: at risk, not failing
    near_box = _box([RTX_4090, RTX_4090], [21.8, 23.5])
    assert [i.severity for i in memory_balance(near_box, Layout(tp=2), {})] == [RISK]
    assert memory_balance(near_box, Layout(tp=2), {"SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK": "false"}) == []


@pytest.mark.parametrize(
    "free_gib",
    [[23.5, 23.5], [21.0, 23.5], [21.2, 23.5], [21.4, 23.5], [11.5, 23.5], [23.5, 11.5, 23.5, 23.5]],
)
def test_memory_verdict_is_sglangs_own_check(free_gib: list[float]) -> None:
    """FAIL exactly when SGLang 0.5.23's ``_check_tp_memory_balance`` raises on some rank."""
    from sglang.srt.distributed.bootstrap import _check_tp_memory_balance

    raised = False
    for own in free_gib:  # every rank compares the smallest free memory of the world with its own
        try:
            _check_tp_memory_balance(pre_model_load_memory=min(free_gib), local_gpu_memory=own)
        except RuntimeError as exc:
            raised = True
            assert str(exc).startswith("The memory capacity is unbalanced. Some GPUs may be occupied")
    box = _box([RTX_4090] * len(free_gib), free_gib)
    ours = memory_balance(box, Layout(tp=len(free_gib)), {})
    assert (FAIL in {i.severity for i in ours}) == raised


def test_eight_l40s() -> None:
    """Workstation cards with PCIe peer access: SGLang itself turns custom all-reduce off above two GPUs."""
    box = assumed_topology(find_gpu("L40S"), 8)
    issues = diagnose(box, Layout(tp=8), NEW_NCCL, {})
    assert [i.area for i in issues] == ["all-reduce", "assumption"]
    assert "not supported on more than two PCIe-only GPUs" in issues[0].text
    # TP pairs with peer access: custom all-reduce over PCIe, nothing to say but the assumption
    pairs = diagnose(box, Layout(tp=2, dp=4), NEW_NCCL, {})
    assert [i.area for i in pairs] == ["assumption"]
    # a TP size custom all-reduce does not take
    assert "supports (2, 4, 6, 8)" in diagnose(box, Layout(tp=3), NEW_NCCL, {})[0].text


def test_one_gpu_has_nothing_to_say() -> None:
    box = _box([RTX_4090])
    assert diagnose(box, Layout(tp=1), NEW_NCCL, {}) == []
    assert diagnose(_box([RTX_4090, RTX_4090]), Layout(tp=1, pp=1), NEW_NCCL, {}) == []


def test_geforce_with_peer_access_means_a_patched_driver() -> None:
    issues = diagnose(_box([RTX_3090, RTX_3090], peer=True), Layout(tp=2), NEW_NCCL, {})
    assert [i.severity for i in issues] == [RISK] and "club-3090#922" in issues[0].text
    assert "--disable-custom-all-reduce" in issues[0].fix
    # the same link on workstation cards is what custom all-reduce over PCIe is for
    assert diagnose(_box(["RTX A6000", "RTX A6000"], peer=True), Layout(tp=2), NEW_NCCL, {}) == []


@pytest.mark.parametrize(
    ("version", "cuda", "gpu", "expected"),
    [
        ("2.25.1", "12.8", RTX_5090, [FAIL]),  # "ncclMaxSharedMem 82240 exceeds device/fn maxSharedMem 79856"
        ("2.26.2", "12.8", RTX_5090, [RISK]),  # sgl-project/sglang#7227
        ("2.27.3", "12.8", RTX_5090, []),
        ("2.30.7", "13.3", "RTX PRO 6000 Blackwell Workstation", []),
        ("2.26.5", "12.4", RTX_5090, [RISK, INFO]),  # no sm_120 code in a CUDA 12.4 build
        ("2.21.5", "12.4", RTX_4090, []),  # Ada runs NCCL's sm_80 code
        (None, None, RTX_5090, [INFO]),
    ],
)
def test_nccl_for_the_architecture(
    version: str | None, cuda: str | None, gpu: str, expected: list[str]
) -> None:
    nccl = NcclLibrary(
        version, cuda, None, "nvidia-nccl-cu12 wheel", "nvidia-nccl-cu12==2.26.2", "nvidia-nccl-cu12"
    )
    box = _box([gpu, gpu])
    found = [i for i in diagnose(box, Layout(tp=2, custom_all_reduce=False), nccl, {}) if i.area == "nccl"]
    assert [i.severity for i in found] == expected
    if FAIL in expected:
        assert (
            'pip install -U "nvidia-nccl-cu12>=2.27.3"' in found[0].fix
            and "NVIDIA/nccl#1637" in found[0].text
        )
    # one GPU: NCCL does not run
    assert not [i for i in diagnose(box, Layout(tp=1), nccl, {}) if i.area == "nccl"]


def test_pcie_peer_to_peer_with_the_iommu_on() -> None:
    """The NCCL_P2P_DISABLE=1 class of hangs is named where it can happen, and only there."""
    box = _box(["L40S", "L40S"], peer=True, iommu="on")
    (hint,) = [i for i in diagnose(box, Layout(tp=2), NEW_NCCL, {}) if "IOMMU" in i.text]
    assert "NCCL_P2P_DISABLE=1" in hint.fix
    assert not [
        i for i in diagnose(box, Layout(tp=2), NEW_NCCL, {"NCCL_P2P_DISABLE": "1"}) if "IOMMU" in i.text
    ]
    for other in (
        _box(["L40S", "L40S"], peer=True, iommu="passthrough"),
        _box([RTX_4090, RTX_4090], iommu="on"),
    ):
        assert not [i for i in diagnose(other, Layout(tp=2), NEW_NCCL, {}) if "IOMMU" in i.text]


def test_which_gpus_a_launch_uses() -> None:
    """SGLang's default placement: replica r, stage s, TP rank t on GPU (r * pp + s) * tp + t."""
    assert Layout(tp=2, pp=2).tp_groups() == [(0, 1), (2, 3)]
    assert Layout(tp=2, pp=2).replicas() == [(0, 1, 2, 3)]
    assert Layout(tp=2, dp=2).replicas() == [(0, 1), (2, 3)]
    assert Layout(tp=16, nnodes=2).tp_groups() == []  # TP across nodes: no custom all-reduce
    # the balance check spans one replica: two unbalanced replicas pass, an unbalanced replica fails
    box = _box([RTX_4090] * 4, [12.0, 12.0, 23.0, 23.0])
    assert memory_balance(box, Layout(tp=2, dp=2), {}) == []
    assert [i.severity for i in memory_balance(box, Layout(tp=4), {})] == [FAIL]


def test_assumed_links_by_kind_of_gpu() -> None:
    assert assumed_link(find_gpu("RTX 4090"))[:2] == (False, False)
    assert assumed_link(find_gpu("RTX 5090"))[:2] == (False, False)
    assert assumed_link(find_gpu("RTX 3090"))[:2] == (False, False)  # a bridge is not assumed
    assert assumed_link(find_gpu("RTX 6000 Ada"))[:2] == (False, True)
    assert assumed_link(find_gpu("L40S"))[:2] == (False, True)
    assert assumed_link(find_gpu("H100 80GB HBM3"))[:2] == (True, True)
    assert assumed_link(find_gpu("sm_89"))[:2] == (False, None)
    box = assumed_topology(find_gpu("RTX 4090"), 2)
    assert box.source == "assumed" and box.assumption.startswith(
        "assumed: 2 x NVIDIA GeForce RTX 4090 over PCIe"
    )


def test_the_box_for_a_launch(tmp_path: Path) -> None:
    from sglang_consumer_gpu.models.launch import Launch

    live = _box([RTX_4090, RTX_3090])
    launch = Launch(argv=(), tp=4)
    assert box_for(live, find_gpu("RTX 4090"), launch) is live
    assumed = box_for(None, find_gpu("RTX 4090"), launch, gpus=8)
    assert assumed.source == "assumed" and len(assumed.gpus) == 8
    assert len(box_for(_box([RTX_4090]), find_gpu("RTX 4090"), launch).gpus) == 4


# --- SGLang 0.5.23's own start-up code, which the decisions follow --------------------------------


def test_sglangs_startup_code_is_what_the_decisions_assume() -> None:
    """When SGLang changes any of this, the decisions in topology/diagnose.py need another look."""
    import msgspec
    from sglang.srt.arg_groups.fields.parallel import Parallel
    from sglang.srt.distributed import bootstrap, parallel_state
    from sglang.srt.distributed.device_communicators import custom_all_reduce, custom_all_reduce_utils

    from sglang_consumer_gpu.topology.diagnose import CUSTOM_AR_SIZES

    assert tuple(custom_all_reduce.CustomAllreduce._SUPPORTED_WORLD_SIZES) == CUSTOM_AR_SIZES
    gate = inspect.getsource(custom_all_reduce_utils.can_use_custom_all_reduce_with_nvlink)
    assert "world_size > 2 and not full_nvlink" in gate and "can_p2p(rank, world_size)" in gate
    # peer access is assumed unless --enable-p2p-check: the real test is replaced by `lambda: True`
    assert {f.name: f.default for f in msgspec.structs.fields(Parallel)}["enable_p2p_check"] is False
    assert "monkey_patch_p2p_access_check()" in inspect.getsource(bootstrap.init_parallel_runtime)
    # a custom all-reduce that fails to start is caught, logged, and NCCL carries on (SGLang PR #4815)
    coordinator = inspect.getsource(parallel_state.GroupCoordinator.__init__)
    assert "except Exception as e:" in coordinator and "Setup Custom allreduce failed with" in coordinator
    # the CUDA IPC open raises the error users report
    assert 'raise RuntimeError(f"CUDART error: {error_str}")' in inspect.getsource(
        __import__("sglang.srt.distributed.device_communicators.cuda_wrapper", fromlist=["x"])
    )
    # the balance check runs for --tp > 1 and its switch defaults to raising
    measure = inspect.getsource(bootstrap.measure_pre_model_load_memory)
    assert "get_parallel().tp_size > 1" in measure and "_check_tp_memory_balance(" in measure
    from sglang.srt.environ import envs

    assert envs.SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK.default is True


# --- the thin readers ----------------------------------------------------------------------------


def test_nccl_version_is_read_from_the_library_file(tmp_path: Path) -> None:
    lib = tmp_path / "libnccl.so.2"
    lib.write_bytes(b"\x7fELF" + b"\0" * 4096 + b"NCCL version 2.25.1+cuda12.8\0" + b"\0" * 4096)
    assert embedded_version(lib) == ("2.25.1", "12.8")
    assert embedded_version(tmp_path / "missing.so") is None
    over = installed_nccl({"SGLANG_NCCL_SO_PATH": str(lib)})
    assert (over.version, over.cuda, over.origin) == ("2.25.1", "12.8", f"SGLANG_NCCL_SO_PATH={lib}")


def test_nccl_torch_loads_here() -> None:
    """The wheel torch's metadata requires, read from its library file (no torch import)."""
    from importlib import metadata

    wheel = next((n for n in NCCL_WHEELS if _installed(n)), None)
    if wheel is None:
        pytest.skip("no nvidia-nccl wheel in this environment")
    nccl = installed_nccl({})
    assert nccl.wheel == wheel and nccl.origin == f"{wheel} wheel" and nccl.path and Path(nccl.path).is_file()
    assert nccl.version == metadata.version(wheel) and nccl.cuda
    assert nccl.torch_wants is None or nccl.torch_wants.startswith("nvidia-nccl")


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_iommu_mode(tmp_path: Path) -> None:
    assert iommu_mode(tmp_path) is None
    groups = tmp_path / "sys/kernel/iommu_groups"
    groups.mkdir(parents=True)
    assert iommu_mode(tmp_path) == "off"
    (groups / "0").mkdir()
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz quiet")
    assert iommu_mode(tmp_path) == "on"
    (tmp_path / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz amd_iommu=on iommu=pt")
    assert iommu_mode(tmp_path) == "passthrough"


FAKE_PYNVML = '''
"""Fake NVML serving the box in $FAKE_NVML_BOX (test stand-in for nvidia-ml-py)."""
import json, os
from types import SimpleNamespace as _NS

class NVMLError(Exception):
    pass

_BOX = json.load(open(os.environ["FAKE_NVML_BOX"]))
_GPUS = _BOX["gpus"]
def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlSystemGetDriverVersion(): return "575.57.08"
def nvmlDeviceGetCount(): return len(_GPUS)
def nvmlDeviceGetHandleByIndex(i): return i
def nvmlDeviceGetName(h): return _GPUS[h]["name"]
def nvmlDeviceGetCudaComputeCapability(h): return tuple(_GPUS[h]["cap"])
def nvmlDeviceGetMemoryInfo(h): return _NS(total=_GPUS[h]["total"], free=_GPUS[h]["free"])
def nvmlDeviceGetPciInfo(h): return _NS(busId=("00000000:%02X:00.0" % (h + 1)).encode())
def nvmlDeviceGetComputeRunningProcesses(h): return []
def nvmlDeviceGetGraphicsRunningProcesses(h):
    # this very process stands in for the desktop, so its name is readable from /proc
    return [_NS(pid=os.getpid(), usedGpuMemory=b) for b in _GPUS[h].get("desktop", [])]
def nvmlDeviceGetP2PStatus(a, b, index):
    if not isinstance(index, int):  # nvidia-ml-py's NVML_P2P_CAPS_INDEX_READ is the tuple (0,)
        raise TypeError("ctypes refuses a tuple")
    return _BOX["p2p"][str(index)]
def nvmlDeviceGetTopologyCommonAncestor(a, b): return _BOX["ancestor"]
def nvmlDeviceGetNvLinkState(h, link):
    if link >= _BOX.get("nvlinks", 0):
        raise NVMLError("Not Supported")
    return 1
def nvmlDeviceGetNvLinkRemotePciInfo(h, link): return _NS(busId="00000000:%02X:00.0" % (2 - h))
'''
#: 2 x RTX 4090 on PCIe (no peer access: NVML says the GPU does not support it), a desktop on GPU 0.
PCIE_BOX = {
    "gpus": [
        {
            "name": RTX_4090,
            "cap": [8, 9],
            "total": 25_757_220_864,
            "free": 21_000_000_000,
            "desktop": [1_900_000_000],
        },
        {"name": RTX_4090, "cap": [8, 9], "total": 25_757_220_864, "free": 25_300_000_000},
    ],
    "p2p": {"0": 2, "1": 2, "2": 5},
    "ancestor": 30,
}
#: 2 x RTX 3090 with a 4-link NVLink bridge.
NVLINK_BOX = {
    "gpus": [{"name": RTX_3090, "cap": [8, 6], "total": 25_769_803_776, "free": 25_300_000_000}] * 2,
    "p2p": {"0": 0, "1": 0, "2": 0},
    "ancestor": 20,
    "nvlinks": 4,
}


def _fake_nvml(tmp_path: Path, box: dict, **env: str) -> dict[str, str]:
    (tmp_path / "pynvml.py").write_text(FAKE_PYNVML)
    (tmp_path / "box.json").write_text(json.dumps(box))
    return {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "FAKE_NVML_BOX": str(tmp_path / "box.json"),
        **env,
    }


READ = """
    import json
    from sglang_consumer_gpu.topology import read_topology
    print(json.dumps(read_topology().to_dict()))
"""


def test_nvml_reader_on_a_pcie_box(tmp_path: Path) -> None:
    topo = run_python_json(READ, env=_fake_nvml(tmp_path, PCIE_BOX))
    assert [g["name"] for g in topo["gpus"]] == [RTX_4090, RTX_4090] and topo["driver"] == "575.57.08"
    assert (
        topo["gpus"][0]["memory_free"] == 21_000_000_000 and topo["gpus"][0]["bus_id"] == "00000000:01:00.0"
    )
    (desktop,) = topo["gpus"][0]["processes"]
    assert desktop.endswith("(1.8 GiB)") and not desktop.startswith("pid"), desktop
    (link,) = topo["links"]
    assert link["link"] == "pcie" and link["path"] == "PHB" and link["peer_access"] is False
    assert link["why_not"] == "the GPU does not support it" and link["nvlinks"] is None


def test_nvml_reader_on_an_nvlink_box_and_visible_devices(tmp_path: Path) -> None:
    topo = run_python_json(READ, env=_fake_nvml(tmp_path, NVLINK_BOX))
    (link,) = topo["links"]
    assert link["link"] == "nvlink" and link["nvlinks"] == 4 and link["peer_access"] is True
    one = run_python_json(READ, env=_fake_nvml(tmp_path, NVLINK_BOX, CUDA_VISIBLE_DEVICES="1"))
    assert [g["index"] for g in one["gpus"]] == [1] and one["links"] == []


# --- what doctor prints ----------------------------------------------------------------------------


def _doctor(tmp_path: Path, box: dict, *args: str, **env: str):
    proc = run_python(
        f"from sglang_consumer_gpu.cli import main; raise SystemExit(main({['doctor', *args]!r}))",
        env=_fake_nvml(tmp_path, box, **env),
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_doctor_multi_gpu_section(tmp_path: Path) -> None:
    proc = _doctor(tmp_path, PCIE_BOX)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Multi-GPU: 2 GPUs (read from NVML, driver 575.57.08)" in out
    assert "GPU 0 - GPU 1: PCIe (PHB: through the CPU's PCIe host bridge), peer access no" in out
    assert "With --tp 2 over these GPUs:" in out
    assert 'x [memory] SGLang raises "The memory capacity is unbalanced.' in out
    assert "- [all-reduce] GPUs 0+1 have no peer access" in out
    data = json.loads(_doctor(tmp_path, PCIE_BOX, "--json").stdout)["multi_gpu"]
    assert data["gpus"] == 2 and [i["severity"] for i in data["issues"]] == [FAIL, INFO]


def test_doctor_says_one_line_for_one_gpu(tmp_path: Path) -> None:
    out = _doctor(tmp_path, NVLINK_BOX, CUDA_VISIBLE_DEVICES="0").stdout
    (line,) = [line for line in out.splitlines() if line.startswith("Multi-GPU")]
    assert line == "Multi-GPU: one GPU visible; nothing to check."
    assert "peer access" not in out and "NCCL" not in out


def test_doctor_model_folds_the_box_into_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """A virtual box of GeForce cards: the assumption is said, the custom all-reduce note given, the verdict kept."""
    rc = main(["doctor", "--model", str(FIX / "Qwen3-30B-A3B-FP8"), "--gpu", "RTX 4090", "--gpus", "2",
               "--no-compile", "--tp", "2", "--context-length", "8192"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "VERDICT: OK" in out, out
    assert "- [multi-gpu] assumed: 2 x NVIDIA GeForce RTX 4090 over PCIe without peer-to-peer" in out
    assert "- [multi-gpu] GPUs 0+1 have no peer access" in out


def test_doctor_model_fails_a_5090_box_on_an_old_nccl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "libnccl.so.2"
    lib.write_bytes(b"\0" * 64 + b"NCCL version 2.25.1+cuda12.8\0")
    monkeypatch.setenv("SGLANG_NCCL_SO_PATH", str(lib))
    rc = main(["doctor", "--model", str(FIX / "Qwen3-30B-A3B-FP8"), "--gpu", "RTX 5090", "--gpus", "2",
               "--no-compile", "--tp", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 3 and "VERDICT: WILL FAIL (1 reason)" in out, out
    assert "x [multi-gpu] NCCL 2.25.1+cuda12.8" in out and "is too old for sm_120" in out
    assert "What to do: what each reason above says" in out


def test_doctor_model_on_a_live_unbalanced_box(tmp_path: Path) -> None:
    """The live box (fake NVML) decides: SGLang's own message, exit code 3."""
    proc = _doctor(tmp_path, PCIE_BOX, "--model", str(FIX / "Qwen3-30B-A3B-FP8"), "--no-compile", "--tp", "2")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert 'x [multi-gpu] SGLang raises "The memory capacity is unbalanced.' in proc.stdout
    assert "assumed" not in proc.stdout
    # the launch command sets SGLang's own switch for it, and the planner re-checks it with it set
    # (AT RISK, not OK: the smallest GPU's free memory leaves a KV pool below one full-context request)
    assert ("Launch command (re-checked: AT RISK; added: --disable-custom-all-reduce, "
            "SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK=0)") in proc.stdout  # fmt: skip
    assert "  SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK=0 python -m sglang.launch_server --model-path " in proc.stdout
