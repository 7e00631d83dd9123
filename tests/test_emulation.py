"""The shared-memory emulation harness (SGLANG_CONSUMER_GPU_EMULATE_SMEM) on a CPU:
the cap reaches a spawned child's Triton driver and torch, the plugin's live
spec carries it into decisions, it is independent of the off switch, and bad
values give one warning and no cap.

No GPU here: Triton's compiled C helper and torch's CUDA property reader are
replaced by fakes *below* the wrapped functions (the real ``CudaUtils.__init__``
and the real ``torch.cuda.get_device_properties`` run), and NVML by a fake
``pynvml`` module.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import run_python, run_python_json

from sglang_consumer_gpu import _pth
from sglang_consumer_gpu.emulation import ENV_SMEM, hooks, smem_cap

TESTS = str(Path(__file__).parent)
CAP = 101_376
H200_SMEM = 232_448

#: Run in a child: fake the layers below the wrapped functions, then read the
#: limits through the real Triton and torch entry points.
READ_LIMITS = """
    import json, types
    import torch
    import triton.backends.nvidia.driver as drv
    from sglang_consumer_gpu.emulation import hooks

    class FakeCModule:
        def get_device_properties(self, device):
            return {"max_shared_mem": 232448, "multiprocessor_count": 132}
        def __getattr__(self, name):
            return object()

    for name in ("compile_module_from_src", "compile_module_from_file"):
        if hasattr(drv, name):
            setattr(drv, name, lambda *a, **k: FakeCModule())
    drv.library_dirs = lambda: []  # it asserts libcuda.so.1 exists
    if "instance" in drv.CudaUtils.__dict__:
        del drv.CudaUtils.instance
    triton_smem = drv.CudaUtils().get_device_properties(0)["max_shared_mem"]

    real = types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, shared_memory_per_block_optin=232448)
    torch.cuda._lazy_init = lambda: None
    torch.cuda.device_count = lambda: 1
    torch.cuda._get_device_properties = lambda i: real
    props = torch.cuda.get_device_properties(0)
    limits = {
        "triton": triton_smem,
        "torch": props.shared_memory_per_block_optin,
        "torch_name": props.name,
        "torch_major": props.major,
        "hooks": hooks.hooks_installed(),
    }
"""


def _child_probe(queue) -> None:  # target of a multiprocessing 'spawn' child
    scope: dict = {}
    try:
        exec(textwrap.dedent(READ_LIMITS), scope)
        queue.put(scope["limits"])
    except Exception as exc:
        queue.put({"error": repr(exc)})


def test_env_name_is_the_contract() -> None:
    assert ENV_SMEM == "SGLANG_CONSUMER_GPU_EMULATE_SMEM" == _pth._EMULATE_SMEM


def test_parsing_and_one_warning_per_bad_value(caplog) -> None:
    assert smem_cap({ENV_SMEM: "101376"}) == CAP
    assert smem_cap({ENV_SMEM: " 101376 "}) == CAP
    assert smem_cap({}) is None and smem_cap({ENV_SMEM: ""}) is None
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.emulation"):
        for bad in ("abc", "-5", "0", "1.5", "abc", "-5"):
            assert smem_cap({ENV_SMEM: bad}) is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages  # one per distinct bad value
    assert all(ENV_SMEM in m and "no shared-memory cap" in m for m in messages)


def test_proxy_never_reports_more_than_the_gpu_has() -> None:
    class Props:
        shared_memory_per_block_optin = 65_536
        name = "Tesla T4"

    p = hooks.CappedDeviceProperties(Props(), CAP)
    assert p.shared_memory_per_block_optin == 65_536 and p.name == "Tesla T4"
    assert hooks.CappedDeviceProperties(type("H", (), {"shared_memory_per_block_optin": H200_SMEM})(), CAP) \
        .shared_memory_per_block_optin == CAP


def test_cap_reaches_a_spawned_child() -> None:
    """SGLang starts schedulers with multiprocessing 'spawn': the child's own .pth run applies the cap."""
    out = run_python_json(
        f"""
        import json, multiprocessing as mp, sys
        sys.path.insert(0, {TESTS!r})
        from test_emulation import _child_probe
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_child_probe, args=(q,))
        p.start()
        limits = q.get(timeout=120)
        p.join()
        print(json.dumps({{"child": limits, "parent_imported_torch": "torch" in sys.modules}}))
        """,
        env={ENV_SMEM: str(CAP)},
    )
    child = out["child"]
    assert "error" not in child, child
    assert child["triton"] == CAP and child["torch"] == CAP
    assert child["torch_name"] == "NVIDIA H200" and child["torch_major"] == 9
    assert child["hooks"] == {hooks.TRITON_DRIVER: True, hooks.TORCH_CUDA: True, hooks.TRITON_COMPILER: False}
    assert not out["parent_imported_torch"]  # the child did not inherit hooks from its parent


def test_unset_means_real_limits_and_no_hooks() -> None:
    out = run_python_json((READ_LIMITS, "print(json.dumps(limits))"))
    assert out["triton"] == H200_SMEM and out["torch"] == H200_SMEM
    assert out["hooks"] == {hooks.TRITON_DRIVER: False, hooks.TORCH_CUDA: False, hooks.TRITON_COMPILER: False}


def test_cap_is_independent_of_the_off_switch() -> None:
    out = run_python_json(
        (
            READ_LIMITS,
            """
            from sglang_consumer_gpu import _pth
            limits["plugin_armed"] = _pth.armed()
            print(json.dumps(limits))
            """,
        ),
        env={ENV_SMEM: str(CAP), "SGLANG_CONSUMER_GPU": "0"},
    )
    assert out["triton"] == CAP and out["torch"] == CAP
    assert out["plugin_armed"] is False  # SGLang runs unpatched, under the cap


def test_bad_value_one_warning_and_no_cap() -> None:
    proc = run_python(
        (
            READ_LIMITS,
            """
            from sglang_consumer_gpu.emulation import smem_cap
            from sglang_consumer_gpu.hardware import current_spec
            smem_cap(); smem_cap(); current_spec()
            print(json.dumps(limits))
            """,
        ),
        env={ENV_SMEM: "lots"},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["triton"] == H200_SMEM and out["torch"] == H200_SMEM
    warnings = [line for line in proc.stderr.splitlines() if ENV_SMEM in line]
    assert len(warnings) == 1 and "'lots' ignored" in warnings[0], proc.stderr


FAKE_PYNVML = '''
"""Fake NVML reporting one H200 (test stand-in for nvidia-ml-py)."""
def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return 1
def nvmlDeviceGetHandleByIndex(i): return i
def nvmlDeviceGetName(h): return "NVIDIA H200"
def nvmlDeviceGetCudaComputeCapability(h): return (9, 0)
class _Mem: total = 150_754_820_096
def nvmlDeviceGetMemoryInfo(h): return _Mem()
'''

LIVE_DECISIONS = """
    import json
    from sglang_consumer_gpu.hardware import current_spec
    from sglang_consumer_gpu.moe.heuristic import heuristic_config
    from sglang_consumer_gpu.moe.shape import MoeShape
    from sglang_consumer_gpu.moe.smem import fits
    from sglang_consumer_gpu.patches.moe_config import PATCHES
    spec = current_spec()
    shape = MoeShape(E=128, N=768, K=2048, topk=8)
    cfgs = {M: heuristic_config(M, shape, spec) for M in (1, 64, 4096)}
    print(json.dumps({
        "spec": spec.to_dict(),
        "moe_patch_needed": all(p.needed_on(spec) for p in PATCHES),
        "fit_under_cap": all(fits(c, None, spec) for c in cfgs.values()),
        "configs": {str(k): v for k, v in cfgs.items()},
    }))
"""


def _fake_nvml_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "pynvml.py").write_text(FAKE_PYNVML)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]), **extra}


def test_live_spec_override_reaches_decisions(tmp_path: Path) -> None:
    """Under the cap the plugin decides for 'this H200 with 101376 B' (not an RTX 4090)."""
    capped = run_python_json(LIVE_DECISIONS, env=_fake_nvml_env(tmp_path, **{ENV_SMEM: str(CAP)}))
    plain = run_python_json(LIVE_DECISIONS, env=_fake_nvml_env(tmp_path))
    spec = capped["spec"]
    assert spec["name"] == "NVIDIA H200" and spec["capability"] == [9, 0] and spec["arch"] == "sm_90"
    assert spec["smem_per_block_optin"] == CAP and "emulated" in spec["source"]
    assert capped["moe_patch_needed"] is True and capped["fit_under_cap"] is True
    assert plain["spec"]["smem_per_block_optin"] == H200_SMEM and plain["spec"]["source"] == "live"
    assert plain["moe_patch_needed"] is False
    # the tiles are chosen for the cap: the uncapped H200's choice differs
    assert capped["configs"] != plain["configs"]


def test_cli_emulate_sets_the_cap_for_the_command() -> None:
    cli = [sys.executable, "-m", "sglang_consumer_gpu"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    probe = "import os, torch; from sglang_consumer_gpu.emulation import hooks; print(os.environ['SGLANG_CONSUMER_GPU_EMULATE_SMEM'], hooks.hooks_installed()['torch.cuda'])"
    ok = subprocess.run([*cli, "emulate", "--smem", "101376", "--", sys.executable, "-c", probe],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["101376", "True"]
    gpu = subprocess.run([*cli, "emulate", "--gpu", "RTX 4090", "--limit-only"], capture_output=True, text=True,
                         env=env, timeout=120)  # fmt: skip
    assert gpu.returncode == 0 and gpu.stdout.strip() == f"export {ENV_SMEM}=101376"
    arch = subprocess.run([*cli, "emulate", "--gpu", "RTX 4090"], capture_output=True, text=True, env=env, timeout=120)
    assert arch.returncode == 0 and arch.stdout.strip() == "export SGLANG_CONSUMER_GPU_EMULATE_GPU='NVIDIA GeForce RTX 4090'"
    bad = subprocess.run([*cli, "emulate", "--smem", "-1", "--", "true"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "--smem" in bad.stderr
