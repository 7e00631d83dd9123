"""The lookup patch under real SGLang 0.5.23: SGLang asks, the plugin answers (virtual RTX 4090)."""

from __future__ import annotations

from conftest import RTX_4090, run_python_json

PROBE = """
import contextlib, json, logging, os
logging.basicConfig(level=logging.INFO)
import sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config as cfgmod
from sglang.srt.layers.moe.moe_runner.triton_utils import fused_moe  # imports try_get_optimal_moe_config
from sglang_consumer_gpu.patching import registry
out = {"status": {k: v.status.value for k, v in registry.results().items() if k.startswith("moe")}}
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.families import on_gpu
def ask(E, N, K, topk, dtype, M, block=None):
    # virtual_gpu: SGLang's own default path reads torch.cuda and its (unpublished) runtime config
    with on_gpu(find_gpu(os.environ["SGLANG_CONSUMER_GPU_VIRTUAL"])):
        return cfgmod.try_get_optimal_moe_config((E, 2 * N, K), (E, K, N), topk, dtype, M, block_shape=block)
out["qwen_bf16_1"] = ask(128, 768, 2048, 8, None, 1)
out["qwen_bf16_4096"] = ask(128, 768, 2048, 8, None, 4096)
out["qwen_fp8_block_64"] = ask(128, 768, 2048, 8, "fp8_w8a8", 64, [128, 128])
out["bundled_4090"] = ask(64, 640, 2048, 6, "fp8_w8a8", 16)
out["no_file_bf16_4096"] = ask(100, 300, 1024, 4, None, 4096)  # no file for any GPU
out["fused_moe_binding_is_module_fn"] = fused_moe.try_get_optimal_moe_config is cfgmod.try_get_optimal_moe_config
print(json.dumps(out))
"""


def _expected(M, shape_args):
    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.moe.lookup import choose
    from sglang_consumer_gpu.moe.shape import MoeShape

    return choose(M, MoeShape(*shape_args), find_gpu(RTX_4090)).config


def test_sglang_asks_plugin_answers_on_virtual_4090():
    out = run_python_json(PROBE, env={"SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090})
    assert out["status"] == {"moe-config-lookup": "applied", "moe-default-config": "applied"}
    assert out["qwen_bf16_1"] == _expected(1, (128, 768, 2048, 8))
    assert out["qwen_bf16_4096"] == _expected(4096, (128, 768, 2048, 8))
    # SGLang's own default would be 64x64x32 at M=4096 for bf16.
    assert out["qwen_bf16_4096"]["BLOCK_SIZE_K"] != 32
    assert out["qwen_fp8_block_64"] == _expected(64, (128, 768, 2048, 8, "fp8_w8a8", (128, 128)))
    assert out["qwen_fp8_block_64"]["BLOCK_SIZE_K"] in (32, 64, 128)
    assert out["bundled_4090"] == _expected(16, (64, 640, 2048, 6, "fp8_w8a8"))
    assert out["fused_moe_binding_is_module_fn"]
    assert out["no_file_bf16_4096"] == _expected(4096, (100, 300, 1024, 4))


def test_not_patched_on_hopper():
    out = run_python_json(PROBE, env={"SGLANG_CONSUMER_GPU_VIRTUAL": "NVIDIA H100 80GB HBM3"})
    assert set(out["status"].values()) == {"not needed on this GPU"}
    # SGLang's own answer (its tuned H100 file / Hopper path), not the plugin's.
    assert out["no_file_bf16_4096"] != _expected(4096, (100, 300, 1024, 4))


def test_off_switch_leaves_sglang_alone():
    out = run_python_json(PROBE, env={"SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090, "SGLANG_CONSUMER_GPU": "0"})
    assert "applied" not in set(out["status"].values())
    assert out["no_file_bf16_4096"]["BLOCK_SIZE_K"] == 32
