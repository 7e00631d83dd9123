"""Lookup order and bad-input handling, on real files (SGLang 0.5.23's own included)."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import GOOD

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe import lookup
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import ConfigKey, config_file_name, triton_dir_name

RTX_4090 = find_gpu("NVIDIA GeForce RTX 4090")
L40S = find_gpu("NVIDIA L40S")
SHAPE = MoeShape(128, 768, 2048, 8, "fp8_w8a8")  # no bundled or SGLang file for the 4090


#: Every test starts with an empty tuned-config directory of the user's and no SGLANG_MOE_CONFIG_DIR.
pytestmark = pytest.mark.usefixtures("user_dir")


def _name(shape=SHAPE, spec=RTX_4090):
    return config_file_name(ConfigKey(shape.E, shape.N, shape.dtype), spec.name)


def test_heuristic_when_no_file():
    c = lookup.choose(64, SHAPE, RTX_4090)
    assert c.source == "heuristic" and c.path is None and c.config["BLOCK_SIZE_M"] >= 16


def test_user_file_wins(user_dir):
    (user_dir / _name()).write_text(json.dumps({"1": GOOD, "64": {**GOOD, "BLOCK_SIZE_M": 32}}))
    c = lookup.choose(50, SHAPE, RTX_4090)
    assert c.source == "user" and c.file_batch == 64 and c.config["BLOCK_SIZE_M"] == 32


def test_user_triton_subdir_layout(user_dir):
    d = user_dir / triton_dir_name()
    d.mkdir()
    (d / _name()).write_text(json.dumps({"1": GOOD}))
    assert lookup.choose(1, SHAPE, RTX_4090).source == "user"


def test_sglang_env_dir_keeps_working(tmp_path, monkeypatch):
    root = tmp_path / "sgl" / "configs" / "triton_3_1_0"
    root.mkdir(parents=True)
    (root / _name()).write_text(json.dumps({"1": GOOD}))
    monkeypatch.setenv("SGLANG_MOE_CONFIG_DIR", str(tmp_path / "sgl"))
    c = lookup.choose(1, SHAPE, RTX_4090)
    assert c.source == "sglang-env" and c.path.endswith(_name())


BAD = {
    "malformed": "{not json",
    "truncated": json.dumps({"1": GOOD})[:-7],
    "wrong keys": json.dumps({"1": {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "GROUP_M": 1}}),
    "non-power-of-two": json.dumps({"1": {**GOOD, "BLOCK_SIZE_N": 96}}),
    "cannot fit": json.dumps(
        {"1": {**GOOD, "BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 256, "BLOCK_SIZE_K": 256, "num_stages": 4}}
    ),
    "not an object": json.dumps([GOOD]),
    "bad batch key": json.dumps({"one": GOOD}),
    "amd-only key": json.dumps({"1": {**GOOD, "waves_per_eu": 2}}),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_user_file_is_skipped_with_a_log_line(user_dir, caplog, kind):
    path = user_dir / _name()
    path.write_text(BAD[kind])
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        c = lookup.choose(1, SHAPE, RTX_4090)
    assert c.source == "heuristic"
    msgs = [r.getMessage() for r in caplog.records]
    assert any(str(path) in m and "skipping" in m for m in msgs), msgs
    found = lookup.find_configs(ConfigKey(SHAPE.E, SHAPE.N, SHAPE.dtype), RTX_4090)
    assert found.skipped and found.skipped[0][0] == str(path)


def test_bad_user_file_falls_through_to_bundled(user_dir):
    shape = MoeShape(64, 640, 2048, 6, "fp8_w8a8")  # bundled for the RTX 4090 (harvested from SGLang)
    (user_dir / _name(shape)).write_text("{")
    c = lookup.choose(16, shape, RTX_4090)
    assert c.source == "bundled", c


def test_sglang_own_file_used_when_nothing_else(monkeypatch):
    # SGLang 0.5.23 ships E=8,N=3584 for the L40S under triton_3_1_0; hide the bundled copy.
    from sglang_consumer_gpu.moe import sources

    monkeypatch.setattr(sources, "BUNDLED_DIR", sources.BUNDLED_DIR / "does-not-exist")
    c = lookup.choose(64, MoeShape(8, 3584, 4096, 2), L40S)
    assert c.source == "sglang" and "triton_3_1_0" in c.path


def test_log_source_once(caplog):
    key = ConfigKey(1, 2, None)
    with caplog.at_level(logging.INFO, logger="sglang_consumer_gpu.moe"):
        lookup.log_source_once(key, RTX_4090, "heuristic", None)
        lookup.log_source_once(key, RTX_4090, "heuristic", None)
    assert len([r for r in caplog.records if "E=1, N=2" in r.getMessage()]) == 1


HOSTILE = {
    "deep": ('{"1":' * 100_000 + "{}" + "}" * 100_000, "nested more than 8 levels deep"),
    "deep-array": ("[" * 100_000 + "]" * 100_000, "nested more than 8 levels deep"),
    "5000 digits": (
        '{"1": {"BLOCK_SIZE_M": '
        + "1" * 5000
        + ', "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1}}',
        "a number longer than 20 digits",
    ),
    "huge key": ('{"' + "1" * 5000 + '": {}}', "is not a batch size"),
    "NaN": ('{"1": {"BLOCK_SIZE_M": NaN}}', "NaN is not a valid value"),
    "not utf-8": (b'{"1": "\xff"}', "not UTF-8 text"),
    "too large": (" " * (2 << 20), "too large for a config file"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_file_is_skipped_never_raises(user_dir, caplog, kind):
    """Issue 16.1: parsing is bounded and never raises out of the lookup."""
    text, problem = HOSTILE[kind]
    path = user_dir / _name()
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        c = lookup.choose(1, SHAPE, RTX_4090)
    assert c.source == "heuristic"
    (msg,) = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert problem in msg, msg


@pytest.mark.parametrize("kind", ["directory", "symlink loop", "dangling symlink"])
def test_not_a_file_where_a_config_should_be_is_named(user_dir, caplog, kind):
    """Issue 16.3: these used to be skipped with no log line at all."""
    path = user_dir / _name()
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink loop":
        path.symlink_to(path)
    else:
        path.symlink_to(user_dir / "gone.json")
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        assert lookup.choose(1, SHAPE, RTX_4090).source == "heuristic"
    msgs = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert len(msgs) == 1 and "skipping MoE config" in msgs[0], msgs


def test_all_bad_entries_in_one_message(user_dir, caplog):
    bad = {"1": {**GOOD, "BLOCK_SIZE_N": 96}, "2": GOOD, "4": {"BLOCK_M": 16}, "x": GOOD, "8": [1]}
    (user_dir / _name()).write_text(json.dumps(bad))
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        lookup.choose(1, SHAPE, RTX_4090)
    (msg,) = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert "4 bad entries" in msg
    for part in (
        "entry 1: BLOCK_SIZE_N=96",
        "entry 4: missing key(s)",
        "key 'x' is not a batch size",
        "entry 8:",
    ):
        assert part in msg, msg


def test_unreadable_user_dir_is_said_once(tmp_path, monkeypatch, caplog):
    """Issue 16.1: a user directory that cannot be listed (here a symlink loop,
    which is unreadable even for root) costs one WARNING, not an exception."""
    user = tmp_path / "loop"
    user.symlink_to(user)
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR", str(user))
    lookup.clear_cache()
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        for shape in (SHAPE, MoeShape(64, 640, 2048, 6, "fp8_w8a8")):
            lookup.choose(1, shape, RTX_4090)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [
        f"sglang-consumer-gpu: cannot read MoE config directory {user} (Too many levels of symbolic links); configs in it are skipped"
    ]


def test_lookup_never_raises(monkeypatch, caplog):
    """Whatever goes wrong inside, SGLang's call gets 'no file', not an exception."""
    from sglang_consumer_gpu.moe import lookup as mod

    def explode(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(mod, "candidates", explode)
    with caplog.at_level(logging.WARNING, logger="sglang_consumer_gpu.moe"):
        found = mod.find_configs(ConfigKey(SHAPE.E, SHAPE.N, SHAPE.dtype), RTX_4090)
    assert found.configs is None and found.source == "none"
    assert "RecursionError" in caplog.text
