"""``doctor --model``: which backend SGLang picks on the GPU, what the plugin makes of it, and
what the user must pass where nothing automatic helps (SGLang 0.5.23's own resolution, run
for the GPU on this CPU machine; analytic kernel bounds only, to keep it quick)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sglang_consumer_gpu.cli import main

FIX = Path(__file__).parent / "fixtures" / "models"
QWEN3_NEXT = str(FIX / "Qwen3-Next-80B-A3B-Instruct")
GPT_OSS = str(FIX / "gpt-oss-20b")


def _doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["doctor", "--no-compile", *argv])
    return rc, capsys.readouterr().out


def _section(out: str) -> str:
    return out.split("Backends (SGLang's choice -> the plugin's, where they differ)\n", 1)[1].split(
        "\n\n", 1
    )[0]


@pytest.mark.parametrize(
    ("gpu", "arch"), [("NVIDIA GeForce RTX 4090", "sm_89"), ("NVIDIA GeForce RTX 5090", "sm_120")]
)
def test_hybrid_linear_attention_model(capsys: pytest.CaptureFixture[str], gpu: str, arch: str) -> None:
    """Qwen3-Next-80B-A3B: SGLang picks FlashInfer for the full-attention layers and Triton for the
    Gated DeltaNet layers on both cards (sgl-project/sglang#10618's FA3 default is gone): nothing to change."""
    _, out = _doctor(capsys, "--model", QWEN3_NEXT, "--gpu", gpu, "--gpus", "8", "--tp", "8")
    assert f"({arch}," in out
    assert _section(out).splitlines() == [
        "  attention            flashinfer (unchanged)",
        "  linear attention     triton (unchanged)",
        "  MoE runner           auto (unchanged): SGLang's Triton fused_moe_kernel (see Kernels)",
    ]
    assert "[backends]" not in out


def test_mxfp4_model_on_rtx_4090(capsys: pytest.CaptureFixture[str]) -> None:
    """gpt-oss-20b: SGLang keeps the MXFP4 experts packed in OpenAI's triton_kernels at EP 1 (gpt_oss.py:98)."""
    rc, out = _doctor(capsys, "--model", GPT_OSS, "--gpu", "NVIDIA GeForce RTX 4090")
    assert rc == 1 and "VERDICT: AT RISK" in out  # the KV pool is short of one 131k-token request
    assert _section(out).splitlines() == [
        "  attention            triton (unchanged)",
        "  MoE experts (MXFP4)  triton_kernel (unchanged): triton_kernels (MXFP4 kept packed) [kernels for sm_89]",
    ]


def test_mxfp4_marlin_on_rtx_4090_runs_only_with_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _doctor(
        capsys, "--model", GPT_OSS, "--gpu", "NVIDIA GeForce RTX 4090", "--moe-runner-backend", "marlin"
    )
    row = _section(out).splitlines()[1]
    assert row.startswith("  MoE experts (MXFP4)  marlin: Marlin W4A16 [kernels for sm_89]")
    assert "(unchanged)" not in row
    assert (
        '- [backends] MoE experts (MXFP4): SGLang alone raises "MXFP4 Marlin requires SM90+" after loading'
        in out
    )


def test_mxfp4_upcast_is_a_risk_with_the_fix_rechecked(capsys: pytest.CaptureFixture[str]) -> None:
    """At EP 2 triton_kernels is out (gpt_oss.py:94): SGLang upcasts the experts to bf16; Marlin,
    which the plugin lets run on sm_89, keeps them MXFP4."""
    rc, out = _doctor(capsys, "--model", GPT_OSS, "--gpu", "NVIDIA GeForce RTX 4090", "--gpus", "2", "--tp", "2",
                      "--ep", "2")  # fmt: skip
    assert rc == 1
    assert "! [backends] MoE experts (MXFP4): SGLang upcasts the MXFP4 experts to bf16 at load (x3.8" in out
    assert "1. --moe-runner-backend marlin\n     -> OK" in out


def test_steered_and_explicit_attention_on_rtx_5090(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Olmo 2/3 (transformers' Olmo2Config defaults): SGLang picks fa3 on sm_120, the plugin Triton;
    the same fa3 passed by the user is theirs, a WILL FAIL with the flag that fixes it, re-checked."""
    import transformers

    (tmp_path / "config.json").write_text(
        json.dumps({**transformers.Olmo2Config().to_dict(), "architectures": ["Olmo2ForCausalLM"]})
    )
    rc, out = _doctor(capsys, "--model", str(tmp_path), "--gpu", "NVIDIA GeForce RTX 5090")
    assert rc == 0
    assert _section(out).splitlines() == [
        "  attention            fa3 -> triton; SGLang's fa3 has no kernels here: sgl-kernel builds FA3 for "
        "sm_80-sm_90 only, not sm_120"
    ]
    assert "- [backends] attention: SGLang alone picks fa3, which has no kernels for sm_120" in out
    rc, out = _doctor(
        capsys, "--model", str(tmp_path), "--gpu", "NVIDIA GeForce RTX 5090", "--attention-backend", "fa3"
    )
    assert rc == 3
    assert "x [backends] attention: fa3 cannot run here (sgl-kernel builds FA3 for sm_80-sm_90 only, not sm_120); " \
           "you passed --attention-backend fa3; pass --attention-backend triton" in out  # fmt: skip
    assert "1. --attention-backend triton\n     -> OK" in out


def test_json_carries_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _doctor(capsys, "--json", "--model", GPT_OSS, "--gpu", "NVIDIA GeForce RTX 5090")
    rows = json.loads(out)["sections"]["backends"]["rows"]
    assert [(r["role"], r["sglang"], r["plugin"], r["runs"]) for r in rows] == [
        ("attention", "triton", "triton", None),
        ("MoE experts (MXFP4)", "flashinfer_mxfp4", "flashinfer_mxfp4", True),
    ]


def test_the_plugins_resolution_only_where_a_family_asks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SGLang's resolution runs again with the plugin's patches only where SGLang alone's backend has no
    kernels for the GPU; the launch the planner judges is then that one (Triton attention on sm_120)."""
    import transformers

    from sglang_consumer_gpu.hardware import find_gpu
    from sglang_consumer_gpu.planner import sglang_edge

    (tmp_path / "config.json").write_text(
        json.dumps({**transformers.Olmo2Config().to_dict(), "architectures": ["Olmo2ForCausalLM"]})
    )
    calls: list[bool] = []
    resolve = sglang_edge._resolve

    def counted(*args, patched: bool = False, **kwargs):
        calls.append(patched)
        return resolve(*args, patched=patched, **kwargs)

    monkeypatch.setattr(sglang_edge, "_resolve", counted)
    for gpu, model, patched, backend in (
        ("NVIDIA GeForce RTX 4090", QWEN3_NEXT, [False], "flashinfer"),
        ("NVIDIA GeForce RTX 5090", str(tmp_path), [False, True], "triton"),
    ):
        calls.clear()
        spec = find_gpu(gpu)
        launch = sglang_edge.resolve_launch(spec, model, ["--tp", "1"], spec.memory_bytes)
        assert (calls, launch.attention_backend) == (patched, backend)
    assert launch.facts["backends"].sglang_attention == ("fa3", "fa3")
