"""The int8_scaled_mm patch against the real SGLang 0.5.23 call sites.

SGLang binds ``int8_scaled_mm`` only when ``is_cuda()`` (``if _is_cuda: from
sgl_kernel import int8_scaled_mm``), and sgl_kernel's CUDA library cannot load
on a machine without a driver. So the subprocess:

1. imports SGLang's quantization package normally (both call-site modules load,
   without the name, as on any CPU machine);
2. provides ``sgl_kernel`` as a package holding sgl_kernel's real Python
   wrapper (``sgl_kernel/gemm.py`` of the installed sglang-kernel 0.4.10,
   loaded from its file; it calls ``torch.ops.sgl_kernel.int8_scaled_mm``,
   which is not registered here);
3. re-executes the two real call-site modules in SGLang's own import order
   (compressed-tensors scheme, then ``w8a8_int8``) with
   ``sglang.srt.utils.is_cuda`` answering True, which is what a CUDA machine
   runs. The plugin's post-import hook fires as it would there.

The GPU is virtual (``SGLANG_CONSUMER_GPU_VIRTUAL``); the Triton kernel runs
on the CPU through Triton's interpreter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_python_json

REPO = Path(__file__).resolve().parents[1]

_CODE = r"""
import importlib, importlib.util, json, os, sys, types
import torch

spec = importlib.util.find_spec("sgl_kernel")
gemm_path = os.path.join(os.path.dirname(spec.origin), "gemm.py")
gspec = importlib.util.spec_from_file_location("sgl_kernel.gemm", gemm_path)
gemm = importlib.util.module_from_spec(gspec)
gspec.loader.exec_module(gemm)
pkg = types.ModuleType("sgl_kernel")
pkg.__path__ = []
pkg.int8_scaled_mm = gemm.int8_scaled_mm
sys.modules["sgl_kernel"] = pkg
sys.modules["sgl_kernel.gemm"] = gemm

import sglang.srt.layers.quantization  # noqa: F401  (SGLang's import order)
import sglang.srt.utils as su
from sglang_consumer_gpu.hardware import find_gpu, override_spec
from sglang_consumer_gpu.patching import registry

CT = "sglang.srt.layers.quantization.compressed_tensors.schemes.compressed_tensors_w8a8_int8"
W = "sglang.srt.layers.quantization.w8a8_int8"
real_is_cuda = su.is_cuda
su.is_cuda = lambda: True
try:
    ct = importlib.reload(sys.modules[CT])
    w = importlib.reload(sys.modules[W])
finally:
    su.is_cuda = real_is_cuda

res = registry.results()["int8-scaled-mm"]
out = {
    "status": res.status.value,
    "detail": res.detail,
    "w_is_sgl_kernel": w.int8_scaled_mm is gemm.int8_scaled_mm,
    "ct_is_w": ct.int8_scaled_mm is w.int8_scaled_mm,
    "marker": (getattr(w.int8_scaled_mm, registry.MARKER, None) or [None])[0],
}

if out["marker"]:
    # What W8A8Int8LinearMethod.apply passes: per-token int8 activations and
    # scales [M, 1], the weight [K, N] column-major, weight_scale [N, 1].
    g = torch.Generator().manual_seed(0)
    M, N, K = 5, 64, 128
    x_q = torch.randint(-128, 128, (M, K), dtype=torch.int8, generator=g)
    x_scale = torch.rand((M, 1), generator=g) * 0.01
    weight = torch.randint(-127, 128, (N, K), dtype=torch.int8, generator=g).t()
    weight_scale = torch.rand((N, 1), generator=g) * 0.01
    bias = torch.randn(N, generator=g).to(torch.bfloat16)
    y = w.int8_scaled_mm(x_q, weight, x_scale, weight_scale, out_dtype=torch.bfloat16, bias=bias)
    ref = (x_q.double() @ weight.double()) * x_scale.double() * weight_scale.double().t() + bias.double()
    out["call"] = {"shape": list(y.shape), "dtype": str(y.dtype),
                   "max_rel_err": float(((y.double() - ref).abs() / ref.abs().clamp_min(1e-3)).max())}
    # The guard: on a GPU sgl-kernel serves, the same reference defers to sgl_kernel.
    with override_spec(find_gpu("RTX 4090")):
        try:
            w.int8_scaled_mm(x_q, weight, x_scale, weight_scale, out_dtype=torch.bfloat16, bias=bias)
            out["deferred"] = "no error"
        except Exception as exc:
            out["deferred"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def _run(gpu: str) -> dict[str, Any]:
    env = {"SGLANG_CONSUMER_GPU_VIRTUAL": gpu, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    return run_python_json(_CODE, env=env, timeout=600)


@pytest.fixture(scope="module")
def rtx5090() -> dict[str, Any]:
    return _run("NVIDIA GeForce RTX 5090")


@pytest.fixture(scope="module")
def rtx4090() -> dict[str, Any]:
    return _run("NVIDIA GeForce RTX 4090")


def test_rtx5090_call_sites_get_the_triton_path(rtx5090: dict[str, Any]) -> None:
    assert rtx5090["status"] == "applied", rtx5090
    assert rtx5090["marker"] == "int8-scaled-mm"
    assert rtx5090["ct_is_w"], "the compressed-tensors call site was re-bound too"
    assert "int8_scaled_mm -> triton" in rtx5090["detail"]
    assert "No implemented int8_scaled_mm for current compute capability" in rtx5090["detail"]


def test_rtx5090_user_gets_a_working_int8_gemm(rtx5090: dict[str, Any]) -> None:
    call = rtx5090["call"]
    assert call["shape"] == [5, 64] and call["dtype"] == "torch.bfloat16"
    assert call["max_rel_err"] < 2**-7  # one bf16 rounding (the interpreter truncates)


def test_guard_defers_to_sgl_kernel_on_a_gpu_it_serves(rtx5090: dict[str, Any]) -> None:
    # sgl_kernel's wrapper ran: its torch.ops.sgl_kernel op is not registered on this CPU machine.
    assert "sgl_kernel" in rtx5090["deferred"], rtx5090["deferred"]


def test_rtx4090_keeps_sgl_kernel(rtx4090: dict[str, Any]) -> None:
    assert rtx4090["status"] == "not needed on this GPU", rtx4090
    assert "int8_scaled_mm -> sgl-kernel" in rtx4090["detail"]
    assert rtx4090["w_is_sgl_kernel"] and rtx4090["ct_is_w"]
    assert rtx4090["marker"] is None
