"""The arch-faithful emulation (SGLANG_CONSUMER_GPU_EMULATE_GPU) on a CPU.

- the override reaches Triton's compile options: a kernel compiled for a target of 90 under
  ``TRITON_OVERRIDE_ARCH=sm89`` is mma.sync code (no wgmma in its PTX, still ``.target sm_90a``)
  and asks for exactly the shared memory the oracle reports for sm_89; SGLang's own
  ``fused_moe_kernel`` too;
- the residency arithmetic for every catalog GPU against an H100/H200 host;
- a launch through Triton's real launch path is checked with the kernel's own shared memory
  and loaded and launched with the padded size;
- in a spawned child (SGLang's schedulers), torch, Triton's driver and the plugin see the target,
  while Triton still compiles cubins for the real capability;
- ``emulate --gpu`` refuses what a host cannot emulate, with one line.

No GPU here: NVML is a fake module reporting an H200; Triton's compiled C helper and torch's
property reader are replaced *below* the wrapped functions (as in test_emulation.py).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_python_json
from test_emulation import READ_LIMITS, _fake_nvml_env

from sglang_consumer_gpu import _pth, settings
from sglang_consumer_gpu.emulation import hooks
from sglang_consumer_gpu.emulation.triton_driver import OVERRIDE_ARCH, fake_driver, own_codegen
from sglang_consumer_gpu.hardware import KNOWN_GPUS, find_gpu
from sglang_consumer_gpu.hardware.emulated import ArchEmulation
from sglang_consumer_gpu.hardware.spec import SM_RESOURCES_BY_ARCH, residency_padding

H200 = find_gpu("NVIDIA H200")
RTX_4090 = find_gpu("RTX 4090")
RTX_3090 = find_gpu("RTX 3090")


def test_env_name_is_the_contract() -> None:
    assert settings.EMULATE_GPU == "SGLANG_CONSUMER_GPU_EMULATE_GPU" == _pth._EMULATE_GPU


# ------------------------------------------------------------------ residency arithmetic


@pytest.mark.parametrize("gpu", [g for g in KNOWN_GPUS if g.capability[0] == 8], ids=lambda g: g.name)
def test_padding_leaves_no_more_blocks_per_sm_than_the_target(gpu) -> None:
    """For every sm_8x catalog GPU, every kernel size and warp count, the padded launch keeps
    exactly the target's blocks per SM on the Hopper host (registers are the same on both)."""
    host = SM_RESOURCES_BY_ARCH[(9, 0)]
    target = gpu.sm_resources
    for warps in (1, 2, 4, 8, 16):
        for shared in range(0, gpu.smem_per_block_optin + 1, 1024):
            want = target.blocks_per_sm(shared, warps)
            padded = residency_padding(target, host, shared, warps)
            assert padded >= shared
            assert padded <= H200.smem_per_block_optin  # always loadable on the host
            assert host.blocks_per_sm(padded, warps) == min(want, host.blocks_per_sm(shared, warps))


def test_the_numbers_for_an_rtx_4090() -> None:
    """Fused-MoE 64x128x64 s3 (49,152 B, 4 warps): 2 per Ada SM, 4 per Hopper SM -> padded to 115,712 B."""
    emu = ArchEmulation(RTX_4090, H200)
    assert RTX_4090.sm_resources.blocks_per_sm(49_152, 4) == 2
    assert H200.sm_resources.blocks_per_sm(49_152, 4) == 4
    assert emu.padded_shared(49_152, 4) == 115_712
    assert H200.sm_resources.blocks_per_sm(115_712, 4) == 2
    # warps decide for small kernels: 8 warps -> 6 per Ada SM (48 warps), 8 per Hopper SM
    assert RTX_4090.sm_resources.blocks_per_sm(0, 8) == 6
    assert H200.sm_resources.blocks_per_sm(emu.padded_shared(0, 8), 8) == 6
    # one block per SM stays one
    assert emu.padded_shared(196_608, 8) == 196_608


def test_what_a_hopper_host_can_emulate() -> None:
    for gpu in KNOWN_GPUS:
        why = ArchEmulation(gpu, H200).refusal()
        if gpu.capability in ((8, 0), (8, 6), (8, 9), (9, 0), (12, 0)):
            assert why == "", (gpu.name, why)
        else:
            assert why, gpu.name
    # sm_120 code ran on an H100 and matched torch (docs/emulation.md); the RTX 5090 has more SMs than
    # the host, so all of the host's are reported and the doctor line says the SM count differs
    rtx_5090 = ArchEmulation(find_gpu("NVIDIA GeForce RTX 5090"), H200)
    assert rtx_5090.override_arch == "sm120" and rtx_5090.sm_count == H200.sm_count
    assert any(n.startswith("SM count (170 on the NVIDIA GeForce RTX 5090") for n in rtx_5090.not_emulated())
    assert "sm_90" in ArchEmulation(RTX_4090, RTX_3090).refusal()  # the host must be a Hopper GPU
    emu = ArchEmulation(RTX_3090, H200)
    assert emu.override_arch == "sm86" and emu.sm_count == 82
    live = emu.live_spec()
    assert (live.name, live.capability, live.smem_per_block_optin, live.sm_count) == (RTX_3090.name, (8, 6), 101_376, 82)
    assert live.memory_bytes == H200.memory_bytes and live.source == "emulated on NVIDIA H200"
    line = emu.describe()
    assert "sm_86 code generation" in line and "NOT emulated" in line and "memory bandwidth" in line
    assert "SM count (kernels run on all 132 SMs; 82 are reported)" in line


# ------------------------------------------------------------------ code generation (Triton, no GPU)


def _dot_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def dot(a, b, c, K: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        offs_m = tl.arange(0, BM)
        offs_n = tl.arange(0, BN)
        offs_k = tl.arange(0, BK)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k in range(0, K, BK):
            x = tl.load(a + offs_m[:, None] * K + (k + offs_k)[None, :])
            y = tl.load(b + (k + offs_k)[:, None] * BN + offs_n[None, :])
            acc += tl.dot(x, y)
        tl.store(c + offs_m[:, None] * BN + offs_n[None, :], acc)

    return dot


def _compile_for_90(override: str | None):
    """Compile a 128x128x64 bf16 dot, 4 warps, 3 stages, for a target of 90 (as on an H100)."""
    import torch
    from triton.runtime.driver import driver

    from sglang_consumer_gpu.oracle.target import _lock

    kernel = _dot_kernel()
    args = [torch.empty(128 * 256, dtype=torch.bfloat16, device="meta"),
            torch.empty(256 * 128, dtype=torch.bfloat16, device="meta"),
            torch.empty(128 * 128, dtype=torch.float32, device="meta")]  # fmt: skip
    with _lock, own_codegen():
        if override:
            os.environ[OVERRIDE_ARCH] = override
        previous = driver._active
        driver.set_active(fake_driver(90, 10_090 if not override else 20_000 + int(override[2:]), benchmarker=None))
        try:
            compiled = kernel.warmup(*args, K=256, BM=128, BN=128, BK=64, num_warps=4, num_stages=3, grid=(1,))
        finally:
            driver._active = previous
            os.environ.pop(OVERRIDE_ARCH, None)
    return compiled


def test_override_makes_hopper_compiles_generate_ada_code() -> None:
    native = _compile_for_90(None)
    ada = _compile_for_90("sm89")
    assert "wgmma" in native.asm["ptx"] and "wgmma" not in ada.asm["ptx"]
    assert "mma.sync" in ada.asm["ptx"]
    for c in (native, ada):  # the binary is still for the host
        assert ".target sm_90a" in c.asm["ptx"] and c.metadata.target.arch == 90
    assert ada.metadata.arch == "sm89" and native.metadata.arch == "sm90"
    # sm_89 keeps num_stages - 1 copies of the A/B tiles, sm_90 all of them
    per_copy = 128 * 64 * 2 + 64 * 128 * 2
    assert ada.metadata.shared == 2 * per_copy and native.metadata.shared > ada.metadata.shared


def test_override_gives_the_oracles_sm89_number_for_sglangs_fused_moe() -> None:
    """SGLang 0.5.23's fused_moe_kernel, bf16 128x128x128 s4 (the seed's data-center tile): the
    oracle's sm_89 compile and a target-90 compile under the override ask for the same bytes."""
    from sglang_consumer_gpu.oracle.kernels.moe import moe_resources

    cfg = {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
           "num_warps": 8, "num_stages": 4}  # fmt: skip
    shape = {"E": 128, "N": 768, "K": 2048, "topk": 8, "M": 64, "dtype": None, "block_shape": None}
    sm89 = moe_resources(RTX_4090, **shape, config=cfg).shared
    sm90 = moe_resources(H200, **shape, config=cfg).shared
    code = f"""
        import json, os
        os.environ["{OVERRIDE_ARCH}"] = "sm89"
        from sglang_consumer_gpu.emulation import triton_driver
        triton_driver.own_codegen = __import__("contextlib").nullcontext  # keep the override in this child
        from sglang_consumer_gpu.hardware import find_gpu
        from sglang_consumer_gpu.oracle.kernels.moe import moe_resources
        r = moe_resources(find_gpu("NVIDIA H200"), **{shape!r}, config={cfg!r})
        print(json.dumps({{"shared": r.shared}}))
    """
    env = {settings.CACHE_DIR: str(Path(os.environ.get("TMPDIR", "/tmp")) / "scg-override-test")}
    over = run_python_json(code, env=env)
    assert (sm89, sm90) == (196_608, 262_144)
    assert over["shared"] == sm89


def test_the_oracle_compiles_for_the_gpu_it_is_asked_about_under_an_emulation(monkeypatch) -> None:
    """An emulated process (override set) asking the oracle about an RTX 3090 gets sm_86 code."""
    from sglang_consumer_gpu.oracle.kernels.moe import moe_resources

    cfg = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1,
           "num_warps": 4, "num_stages": 3}  # fmt: skip
    shape = {"E": 8, "N": 3584, "K": 4096, "topk": 2, "M": 64, "dtype": None, "block_shape": None}
    plain = moe_resources(H200, **shape, config=cfg).shared
    monkeypatch.setenv(OVERRIDE_ARCH, "sm89")
    assert moe_resources(H200, **shape, config=cfg).shared == plain
    assert os.environ[OVERRIDE_ARCH] == "sm89"  # restored after the compile


# ------------------------------------------------------------------ the launch path (Triton, no GPU)


def test_launch_is_checked_unpadded_and_launched_padded(monkeypatch) -> None:
    """Triton's real JITFunction.run -> CompiledKernel._init_handles on the no-GPU driver: the
    limit check sees the kernel's own bytes; load_binary and the launch get the padded size."""
    import torch
    import triton.compiler.compiler as compiler
    from triton.runtime.driver import driver

    from sglang_consumer_gpu.emulation.no_gpu import emulated_gpu

    emu = ArchEmulation(RTX_4090, H200)
    monkeypatch.setattr(compiler.CompiledKernel, "_init_handles", compiler.CompiledKernel._init_handles)
    assert hooks.patch_compiled_kernel(compiler, emu)
    kernel = _dot_kernel()
    args = [torch.empty(64 * 128, dtype=torch.bfloat16, device="meta"),
            torch.empty(128 * 128, dtype=torch.bfloat16, device="meta"),
            torch.empty(64 * 128, dtype=torch.float32, device="meta")]  # fmt: skip
    loaded: list[int] = []
    capped_h200 = dataclasses.replace(H200, smem_per_block_optin=101_376)  # sm_90 code, Hopper SMs
    with emulated_gpu(capped_h200) as launches:
        utils = driver.active.utils
        real_load = utils.load_binary

        def recording(name, binary, shared, device):
            loaded.append(shared)
            return real_load(name, binary, shared, device)

        utils.load_binary = recording
        hooks._utils_hooks(utils, 101_376, emu)
        # 64x128x64, 4 warps, 2 stages of sm_90 code: 49,152 B, 4 blocks per Hopper SM, 2 per Ada SM
        compiled = kernel[(1,)](*args, K=128, BM=64, BN=128, BK=64, num_warps=4, num_stages=2)
    assert compiled.metadata.shared == 49_152
    assert launches and launches[-1].shared == 49_152  # what Triton's own limit check compared
    assert loaded == [115_712]
    assert compiled.packed_metadata[-1] == 115_712


# ------------------------------------------------------------------ every process sees the target


def test_a_spawned_child_sees_the_target_and_triton_still_builds_for_the_host(tmp_path: Path) -> None:
    code = (
        READ_LIMITS,
        """
        import os
        from sglang_consumer_gpu.hardware import current_spec
        limits["torch_capability"] = list(torch.cuda.get_device_capability(0))
        limits["torch_sms"] = props.multi_processor_count
        limits["triton_sms"] = drv.CudaUtils().get_device_properties(0)["multiprocessor_count"]
        limits["triton_capability"] = list(drv.CudaDriver().get_device_capability(0))
        limits["override"] = os.environ.get("TRITON_OVERRIDE_ARCH")
        spec = current_spec()
        limits["spec"] = [spec.name, list(spec.capability), spec.smem_per_block_optin, spec.sm_count, spec.source]
        print(json.dumps(limits))
        """,
    )
    # the fake torch properties stand for the H200 in READ_LIMITS: give them the fields the proxy keeps
    code = (code[0].replace('real = types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, shared_memory_per_block_optin=232448)',
                            'real = types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, shared_memory_per_block_optin=232448, '
                            'multi_processor_count=132, shared_memory_per_multiprocessor=233472, max_threads_per_multi_processor=2048)'),
            code[1])  # fmt: skip
    out = run_python_json(code, env=_fake_nvml_env(tmp_path, **{settings.EMULATE_GPU: "RTX 4090"}))
    assert out["triton"] == 101_376 and out["torch"] == 101_376
    assert out["torch_name"] == RTX_4090.name and out["torch_capability"] == [8, 9] and out["torch_sms"] == 128
    assert out["triton_sms"] == 128
    assert out["triton_capability"] == [9, 0]  # cubins are built for the GPU that runs them
    assert out["override"] == "sm89"
    assert out["spec"] == [RTX_4090.name, [8, 9], 101_376, 128, "emulated on NVIDIA H200"]
    assert out["hooks"] == {hooks.TRITON_DRIVER: True, hooks.TORCH_CUDA: True, hooks.TRITON_COMPILER: True}


def test_a_users_override_wins_with_a_warning(tmp_path: Path) -> None:
    env = _fake_nvml_env(tmp_path, **{settings.EMULATE_GPU: "RTX 4090", OVERRIDE_ARCH: "sm90"})
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ['TRITON_OVERRIDE_ARCH'])"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip
    assert proc.stdout.strip() == "sm90"
    assert "TRITON_OVERRIDE_ARCH=sm90 (set by you) wins" in proc.stderr


def test_cli_emulate_gpu(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "sglang_consumer_gpu", "emulate"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    fake = {**env, **_fake_nvml_env(tmp_path)}
    probe = "import os; print(os.environ['SGLANG_CONSUMER_GPU_EMULATE_GPU'], os.environ.get('TRITON_OVERRIDE_ARCH'))"
    ok = subprocess.run([*cli, "--gpu", "RTX 4090", "--", sys.executable, "-c", probe],
                        capture_output=True, text=True, env=fake, timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["NVIDIA", "GeForce", "RTX", "4090", "sm89"]
    first = ok.stderr.splitlines()[0]
    assert first.startswith("sglang-consumer-gpu: emulating NVIDIA GeForce RTX 4090 on NVIDIA H200")
    assert "NOT emulated" in first
    for argv, what in (
        (["--gpu", "Tesla T4", "--", "true"], "cannot run sm_75 code"),
        (["--gpu", "RTX 9090", "--", "true"], "unknown GPU"),
        (["--smem", "10000000", "--", "true"], "--smem"),
        (["--smem", "101376", "--limit-only"], "--limit-only goes with --gpu"),
    ):
        bad = subprocess.run([*cli, *argv], capture_output=True, text=True, env=fake, timeout=120)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.strip().count("\n") == 0 and what in bad.stderr, bad.stderr


def _load_file_as_module(name: str, path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cuda_binaries_keep_seeing_the_host(monkeypatch) -> None:
    """sgl-kernel picks its library by capability and SGLang's JIT compiles for it: under the RTX 4090
    emulation on an H200 both must answer sm_90 (a cubin for sm_89 does not load on Hopper)."""
    import importlib.util

    emu = ArchEmulation(RTX_4090, H200)
    # sgl-kernel's loader, the installed file (importing the package needs libcuda; the file does not)
    origin = Path(importlib.util.find_spec("sgl_kernel").origin).parent / "load_utils.py"
    loader = _load_file_as_module("sgl_kernel.load_utils", origin)
    assert hooks.patch_host_capability(loader, emu)
    assert loader._get_compute_capability() == 90
    import sglang.kernels.jit.utils.arch as jit

    for name in ("_init_jit_cuda_arch_once", "_CUDA_ARCH"):
        monkeypatch.setattr(jit, name, getattr(jit, name, None), raising=False)
    assert hooks.patch_host_capability(jit, emu)
    arch = jit.get_jit_cuda_arch()
    assert (arch.major, arch.minor) == (9, 0) and arch.target_name.endswith("a")
