"""The answer cache behind doctor --model: a repeated question (a launch's resolution, SGLang's own
fused-MoE configs) is answered without asking SGLang, any change to what SGLang's answer depends on
is a new question, and a bad entry is a miss."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.families import moe as moe_family
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.oracle import answers
from sglang_consumer_gpu.planner import sglang_edge

MODELS = Path(__file__).parent / "fixtures" / "models"
SPEC = find_gpu("RTX 4090")
GIB = 2**30


class Asked(Exception):
    """SGLang was asked although the answer was cached."""


def _never(*_: object) -> None:
    raise Asked


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    answers._sglang_environment.cache_clear()
    monkeypatch.setenv(settings.CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setenv(settings.ANSWER_CACHE, "1")
    model = tmp_path / "model"
    shutil.copytree(MODELS / "Qwen3-30B-A3B", model)
    return model


def test_a_repeated_question_is_answered_from_disk(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--tp", "1"]
    assert not sglang_edge.known(SPEC, str(cache), argv, 24 * GIB)
    first = sglang_edge.resolve_launch(SPEC, str(cache), argv, 24 * GIB)
    assert sglang_edge.known(SPEC, str(cache), argv, 24 * GIB)
    monkeypatch.setattr(sglang_edge, "_resolve_launch", _never)
    assert sglang_edge.resolve_launch(SPEC, str(cache), argv, 24 * GIB) == first
    with pytest.raises(Asked):  # another flag is another question
        sglang_edge.resolve_launch(SPEC, str(cache), [*argv, "--mem-fraction-static", "0.8"], 24 * GIB)


def test_sglangs_refusal_is_remembered_with_its_message(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--attention-backend", "no-such-backend"]
    with pytest.raises(sglang_edge.SglangRejects) as first:
        sglang_edge.resolve_launch(SPEC, str(cache), argv, 24 * GIB)
    monkeypatch.setattr(sglang_edge, "_resolve_launch", _never)
    with pytest.raises(sglang_edge.SglangRejects) as again:
        sglang_edge.resolve_launch(SPEC, str(cache), argv, 24 * GIB)
    assert str(again.value) == str(first.value) and "no-such-backend" in str(first.value)


def test_what_the_answer_depends_on_is_in_the_key(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def key(spec=SPEC, argv=("--tp", "1"), gpu_bytes=24 * GIB) -> str | None:
        return sglang_edge._answer_key(spec, str(cache), list(argv), gpu_bytes)

    base = key()
    assert base is not None and base == key()
    assert len({base, key(spec=find_gpu("RTX 3090")), key(argv=("--tp", "2")), key(gpu_bytes=20 * GIB)}) == 4
    # SGLang reads its switches from the environment, as the process started (its resolution
    # writes its own defaults there); the plugin's own variables are not SGLang's input
    monkeypatch.setenv("SGLANG_MY_SWITCH", "1")
    assert key() == base
    answers._sglang_environment.cache_clear()
    assert key() != base
    monkeypatch.delenv("SGLANG_MY_SWITCH")
    monkeypatch.setenv(settings.EMULATE_SMEM, "101376")
    answers._sglang_environment.cache_clear()
    assert key() == base
    cfg = cache / "config.json"
    cfg.write_text(cfg.read_text().replace('"num_hidden_layers": 48', '"num_hidden_layers": 47'))
    assert key() != base
    monkeypatch.setenv(settings.ANSWER_CACHE, "off")
    assert key() is None


def test_an_unreadable_entry_is_asked_again_and_rewritten(cache: Path) -> None:
    argv = ["--tp", "1"]
    k = sglang_edge._answer_key(SPEC, str(cache), argv, 24 * GIB)
    path = settings.cache_root() / "answers" / k[:2] / f"{k}.pickle"
    path.parent.mkdir(parents=True)
    for junk in (b"not a pickle", pickle.dumps({"a": "dict"}), pickle.dumps(("Other", "x"))):
        path.write_bytes(junk)
        assert answers.get(k, sglang_edge._answer) is None
    launch = sglang_edge.resolve_launch(SPEC, str(cache), argv, 24 * GIB)
    assert answers.get(k, sglang_edge._answer) == launch


def test_sglangs_own_moe_configs_are_remembered(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shape = MoeShape(E=128, N=768, K=2048, topk=8)
    tuned = tmp_path / "tuned"  # SGLang alone also reads SGLANG_MOE_CONFIG_DIR: its files are in the key
    (tuned / "configs" / "triton_3_8_0").mkdir(parents=True)
    monkeypatch.setenv("SGLANG_MOE_CONFIG_DIR", str(tuned))
    answers._sglang_environment.cache_clear()
    first = moe_family.sglang_choices_remembered(SPEC, shape, [1, 64, 512])
    assert first == moe_family.sglang_choices(SPEC, shape, [1, 64, 512])  # SGLang alone's answer, as asked
    monkeypatch.setattr(moe_family, "sglang_choices", _never)
    assert moe_family.sglang_choices_remembered(SPEC, shape, [512, 1, 64, 64]) == first
    (tuned / "configs" / "triton_3_8_0" / "x.json").write_text("{}")
    with pytest.raises(Asked):
        moe_family.sglang_choices_remembered(SPEC, shape, [1, 64, 512])
