"""Fault injection against the installed plugin and the real SGLang 0.5.23, one
case per finding of issue 16. Every case asserts two things: SGLang's call
still returns SGLang's or the plugin's answer, and the log says what happened.

Each scenario runs in a fresh interpreter (the .pth, the post-import hooks and
the off switch only act at interpreter start); a scenario's interpreter is
shared by the tests that read its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOOD, RTX_4090, run_python

from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.moe.lookup import choose
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import ConfigKey, config_file_name

TESTS = str(Path(__file__).parent)
L40S = "NVIDIA L40S"
CFG = "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config"

# (E, N, K, topk, dtype): E=256,N=512 fp8 has a bundled L40S file (GROUP_SIZE_M=64, 4 stages at M=16).
BUNDLED = (256, 512, 7168, 8, "fp8_w8a8")
# One shape per hostile user file; none has a bundled or SGLang file for the L40S.
HOSTILE = {
    "deep": (8, 1000, 1024, 2, None),
    "digits": (8, 1001, 1024, 2, None),
    "loop": (8, 1002, 1024, 2, None),
    "dir": (8, 1003, 1024, 2, None),
    "many_bad": (8, 1004, 1024, 2, None),
}

ASK = f"""
import json, logging, os, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import {CFG} as cfg
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.families import on_gpu
from sglang_consumer_gpu.patching import registry
def ask(E, N, K, topk, dtype, M):
    with on_gpu(find_gpu(os.environ["SGLANG_CONSUMER_GPU_VIRTUAL"])):
        return cfg.try_get_optimal_moe_config((E, 2 * N, K), (E, K, N), topk, dtype, M)
def results():
    return {{k: v.to_dict() for k, v in registry.results().items()}}
"""


def _file_name(shape: tuple, gpu: str = L40S) -> str:
    E, N, _, _, dtype = shape
    return config_file_name(ConfigKey(E, N, dtype), gpu)


def _plugin_answer(shape: tuple, M: int, gpu: str = L40S) -> dict:
    """What the plugin answers from its own sources (bundled, SGLang's, heuristic), no user dir."""
    from sglang_consumer_gpu.moe import lookup

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR", "/nonexistent/sglang-consumer-gpu-test")
        mp.delenv("SGLANG_MOE_CONFIG_DIR", raising=False)
        lookup.clear_cache()
        return choose(M, MoeShape(*shape), find_gpu(gpu)).config


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m sglang_consumer_gpu ARGS`` with ``env`` added to this environment."""
    return subprocess.run(
        [sys.executable, "-m", "sglang_consumer_gpu", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def _shape_args(E: int, N: int, K: int, topk: int) -> tuple[str, ...]:
    return ("--E", str(E), "--N", str(N), "--K", str(K), "--topk", str(topk))


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "SGLANG_CONSUMER_GPU_VIRTUAL": L40S,
        "SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR": str(tmp / "user"),
        "SGLANG_CONSUMER_GPU_CACHE_DIR": str(tmp / "cache"),
        "PYTHONPATH": os.pathsep.join([TESTS, str(tmp), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _warnings(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING") and needle in line]


# --- 1 and 3: hostile files in the user's MoE config directory ---------------------------------------


@pytest.fixture(scope="module")
def moe_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moe_faults")
    user = tmp / "user"
    user.mkdir()
    (user / _file_name(BUNDLED)).write_text("[" * 100_000 + "]" * 100_000)  # shadows the bundled file
    (user / _file_name(HOSTILE["deep"])).write_text('{"1":' * 100_000 + "{}" + "}" * 100_000)
    (user / _file_name(HOSTILE["digits"])).write_text(
        json.dumps({"1": GOOD})[:-2] + ', "GROUP_SIZE_M": ' + "9" * 5000 + "}}"
    )
    loop = user / _file_name(HOSTILE["loop"])
    loop.symlink_to(loop)
    (user / _file_name(HOSTILE["dir"])).mkdir()
    many = {"1": {**GOOD, "BLOCK_SIZE_N": 96}, "2": GOOD, "4": {"BLOCK_M": 16}, "8": [1]}
    (user / _file_name(HOSTILE["many_bad"])).write_text(json.dumps(many))
    calls = [(BUNDLED, 16), *((shape, 64) for shape in HOSTILE.values()), (BUNDLED, 4096)]
    proc = run_python(
        (
            ASK,
            f"""
        out = [ask(*shape, M) for shape, M in {calls!r}]
        print(json.dumps({{"answers": out, "results": results()}}))
        """,
        ),
        env=_env(tmp),
    )
    return tmp, calls, _last_json(proc), proc.stderr


def test_hostile_file_does_not_switch_the_lookup_off(moe_files):
    """Issue 16.1: a 100,000-deep file shadowing the bundled E=256,N=512 fp8 L40S
    file is skipped; that layer and every later one keep the plugin's answer."""
    _tmp, calls, out, stderr = moe_files
    for (shape, M), answer in zip(calls, out["answers"], strict=True):
        assert answer == _plugin_answer(shape, M), (shape, M)
    assert out["answers"][0]["GROUP_SIZE_M"] == 64 and out["answers"][0]["num_stages"] == 4  # bundled tile
    lookup = out["results"]["moe-config-lookup"]
    assert lookup["status"] == "applied" and "fallbacks" not in lookup, lookup
    assert not _warnings(stderr, "raised")


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("deep", "nested more than"),
        ("digits", "a number longer than 20 digits"),
        ("loop", "Too many levels of symbolic links"),
        ("dir", "is a directory"),
    ],
)
def test_bad_user_file_is_named_once_with_its_problem(moe_files, case, problem):
    """Issues 16.1 and 16.3: one WARNING naming the file and what is wrong with it."""
    tmp, _, _, stderr = moe_files
    path = str(tmp / "user" / _file_name(HOSTILE[case]))
    lines = _warnings(stderr, path)
    assert len(lines) == 1 and problem in lines[0] and "skipping MoE config" in lines[0], lines


def test_every_bad_entry_is_reported_at_once(moe_files):
    """Issue 14: all bad entries of a user file in one message, not only the first."""
    tmp, _, _, stderr = moe_files
    (line,) = _warnings(stderr, str(tmp / "user" / _file_name(HOSTILE["many_bad"])))
    assert "3 bad entries" in line
    assert (
        "entry 1: BLOCK_SIZE_N=96" in line
        and "entry 4: missing key(s)" in line
        and "entry 8: entry is a list" in line
    )


def test_unlistable_user_dir_is_skipped_with_one_warning(tmp_path):
    """Issue 16.1: a user config directory that cannot be read (mode 000; as root,
    a directory that is a symlink loop, which no privilege can list)."""
    user = tmp_path / "user"
    if os.geteuid() == 0:
        user.symlink_to(user)
    else:
        user.mkdir()
        user.chmod(0)
    try:
        proc = run_python(
            (
                ASK,
                f"out = [ask(*{BUNDLED!r}, M) for M in (1, 4096)]\nprint(json.dumps({{'answers': out, 'results': results()}}))",
            ),
            env=_env(tmp_path),
        )
    finally:
        if not user.is_symlink():
            user.chmod(0o700)
    out = _last_json(proc)
    assert out["answers"] == [_plugin_answer(BUNDLED, 1), _plugin_answer(BUNDLED, 4096)]
    lines = _warnings(proc.stderr, f"cannot read MoE config directory {user}")
    assert len(lines) == 1, proc.stderr[-3000:]
    assert out["results"]["moe-config-lookup"]["status"] == "applied"


def test_moe_config_cli_names_the_bad_file_and_exits_cleanly(moe_files):
    """Issue 16.7: `moe-config` on the hostile files: the table, a WARNING naming
    the file, exit 0, no traceback."""
    tmp, _, _, _ = moe_files
    for case in ("deep", "digits"):
        E, N, K, topk, _ = HOSTILE[case]
        proc = _cli("moe-config", *_shape_args(E, N, K, topk), "--gpu", L40S, "--no-oracle", env=_env(tmp))
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert str(tmp / "user" / _file_name(HOSTILE[case])) in proc.stderr
        assert "heuristic" in proc.stdout


def test_moe_config_cli_with_unreadable_user_dir(tmp_path):
    user = tmp_path / "user"
    user.symlink_to(user)
    E, N, K, topk, _ = BUNDLED
    proc = _cli(
        "moe-config", *_shape_args(E, N, K, topk), "--dtype", "fp8_w8a8", "--gpu", L40S, "--no-oracle",
        env=_env(tmp_path),
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot read MoE config directory {user}" in proc.stderr
    assert "bundled" in proc.stdout


# --- 2: hostile extra patch modules ------------------------------------------------------------------

HOSTILE_MODULES = {
    "patch_is_string": 'PATCH = "not a patch"\n',
    "patches_is_none": "PATCHES = None\n",
    "exits_at_import": "import sys\nsys.exit(3)\n",
    "raises_at_import": "raise RuntimeError('broken site patch')\n",
}


@pytest.fixture(scope="module")
def hostile_modules(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modules")
    for name, body in HOSTILE_MODULES.items():
        (tmp / f"{name}.py").write_text(body)
    extra = ",".join([*HOSTILE_MODULES, "_probe_patches"])
    proc = run_python(
        (
            ASK,
            """
        import sglang
        answer = ask(100, 300, 1024, 4, None, 4096)
        print(json.dumps({"answer": answer, "results": results()}))
        """,
        ),
        env={
            **_env(tmp),
            "SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090,
            "SGLANG_CONSUMER_GPU_EXTRA_PATCH_MODULES": extra,
        },
    )
    return _last_json(proc), proc.stderr


@pytest.mark.parametrize("module", sorted(HOSTILE_MODULES))
def test_hostile_patch_module_is_skipped_alone(hostile_modules, module):
    """Issue 16.2: only that module is skipped, with a WARNING naming it; every
    built-in patch and the well-formed extra module still apply."""
    out, stderr = hostile_modules
    lines = _warnings(stderr, f"patch module {module}")
    assert len(lines) == 1 and "skipped" in lines[0], stderr[-3000:]
    res = out["results"]
    assert (
        res["moe-config-lookup"]["status"] == "applied" and res["moe-default-config"]["status"] == "applied"
    )
    assert res["probe"]["status"] == "applied"
    assert "activation failed" not in stderr
    assert out["answer"] == _plugin_answer((100, 300, 1024, 4, None), 4096, RTX_4090)


# --- 4: unknown virtual GPU name ---------------------------------------------------------------------


def test_unknown_virtual_gpu_is_said_once(tmp_path):
    """Issue 16.4: an unknown SGLANG_CONSUMER_GPU_VIRTUAL on a machine with a GPU
    (a live RTX 4090 spec is injected): one WARNING for 100 config calls, and
    the decisions are the live GPU's."""
    proc = run_python(
        f"""
        import json, logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        from dataclasses import replace
        from sglang_consumer_gpu.hardware import current, find_gpu
        current._live_cache[:] = [[replace(find_gpu("{RTX_4090}"), source="live")]]
        import {CFG} as cfg
        out = [cfg.try_get_optimal_moe_config((100, 600, 1024), (100, 1024, 300), 4, None, 4096) for _ in range(100)]
        print(json.dumps({{"answers": out}}))
        """,
        env={"SGLANG_CONSUMER_GPU_VIRTUAL": "RTX 9999", "SGLANG_CONSUMER_GPU_CACHE_DIR": str(tmp_path)},
    )
    out = _last_json(proc)
    assert all(a == _plugin_answer((100, 300, 1024, 4, None), 4096, RTX_4090) for a in out["answers"])
    lines = [line for line in proc.stderr.splitlines() if "SGLANG_CONSUMER_GPU_VIRTUAL" in line]
    assert len(lines) == 1 and lines[0].startswith("WARNING") and "'RTX 9999' ignored" in lines[0], lines


# --- 5: the off switch -------------------------------------------------------------------------------

PATCHED = f"""
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import {CFG} as cfg
from sglang.srt.plugins import load_plugins
load_plugins()
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.families import on_gpu
from sglang_consumer_gpu.patching import registry
installed = [p.name for p in registry.patches() if registry.installed(p)]
with on_gpu(find_gpu("{RTX_4090}"), patched=bool(installed)):  # publishes what SGLang's default reads
    answer = cfg.get_default_config(4096, 100, 300, 1024, 4, None, False, None)
print(json.dumps({{"installed": installed, "answer": answer}}))
"""


@pytest.mark.parametrize("value", [" OFF "])
def test_off_switch_values_turn_everything_off_and_log_the_value(value):
    """Issue 16.5: every accepted off value (any case, spaces around) on both
    paths; the entry point logs the value as set; SGLang's own default answers."""
    proc = run_python(PATCHED, env={"SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090, "SGLANG_CONSUMER_GPU": value})
    out = _last_json(proc)
    assert out["installed"] == []
    assert out["answer"]["BLOCK_SIZE_K"] == 32  # SGLang's own 64x64x32 bf16 default
    assert f"disabled by SGLANG_CONSUMER_GPU={value!r}" in proc.stderr


@pytest.mark.parametrize("value", ["garbage", ""])
def test_unrecognised_switch_value_warns_once_and_stays_on(value):
    """Issue 16.5: an unrecognised value leaves the plugin on and says so once
    per launch (a spawned worker does not repeat it)."""
    spawn = value == "garbage"
    proc = run_python(
        (
            PATCHED,
            """
        child = None
        """
            if not spawn
            else """
        import multiprocessing as mp
        import _spawn_probe
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_spawn_probe.probe, args=(q,))
        p.start(); child = q.get(timeout=240); p.join(60)
        """,
            'print(json.dumps({"installed": installed, "answer": answer, "child": child}))',
        ),
        env={
            "SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090,
            "SGLANG_CONSUMER_GPU": value,
            "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
        },
    )
    out = _last_json(proc)
    assert "moe-default-config" in out["installed"]
    assert out["answer"] == _plugin_answer((100, 300, 1024, 4, None), 4096, RTX_4090)
    if spawn:
        assert out["child"]["results"]["moe-config-lookup"] == "applied"
    lines = _warnings(proc.stderr, "is not a recognised value")
    assert len(lines) == 1 and f"SGLANG_CONSUMER_GPU={value!r}" in lines[0], proc.stderr[-3000:]
    assert "0/false/no/off" in lines[0]


def test_switch_values_are_one_definition():
    from sglang_consumer_gpu import _pth, settings

    assert _pth._OFF == settings.OFF_VALUES
    for raw, enabled, recognised in [
        (None, True, True),
        ("0", False, True),
        (" FALSE", False, True),
        ("no", False, True),
        ("Off", False, True),
        ("1", True, True),
        ("true", True, True),
        ("YES", True, True),
        ("on", True, True),
        ("", True, False),
        ("disable", True, False),
        ("2", True, False),
    ]:
        env = {} if raw is None else {"SGLANG_CONSUMER_GPU": raw}
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("SGLANG_CONSUMER_GPU", raising=False)
            for k, v in env.items():
                mp.setenv(k, v)
            sw = settings.switch()
        assert (sw.enabled, sw.recognised) == (enabled, recognised), raw


# --- 8: an SGLang release outside the covered range --------------------------------------------------


@pytest.fixture(scope="module")
def old_sglang(tmp_path_factory):
    """Metadata that says SGLang 0.4.4 (what the oldest reports ran) in front of
    the real 0.5.23: the plugin must take the version at its word."""
    tmp = tmp_path_factory.mktemp("old")
    info = tmp / "sglang-0.4.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sglang\nVersion: 0.4.4\n")
    return _env(tmp, SGLANG_CONSUMER_GPU_VIRTUAL=RTX_4090)


def test_uncovered_release_warns_once_and_runs_unpatched(old_sglang):
    proc = run_python(
        (
            ASK,
            "import sglang\nanswer = ask(100, 300, 1024, 4, None, 4096)\nprint(json.dumps({'answer': answer, 'results': results()}))",
        ),
        env=old_sglang,
    )
    out = _last_json(proc)
    assert out["answer"]["BLOCK_SIZE_K"] == 32  # SGLang's own default
    sglang_patches = {n: r for n, r in out["results"].items() if not n.startswith("safety-net")}
    assert {r["status"] for r in sglang_patches.values()} == {"version not covered"}
    # The safety net patches Triton, not SGLang: it stays armed on any SGLang release.
    assert all(out["results"][n]["status"] != "version not covered" for n in ("safety-net", "safety-net-autotune"))
    lines = _warnings(proc.stderr, "SGLang 0.4.4")
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "covers SGLang 0.4.9 to 0.5.23" in lines[0] and "What to do" in lines[0]


def test_doctor_on_uncovered_release_says_what_to_do(old_sglang):
    proc = _cli("doctor", "--gpu", RTX_4090, env=old_sglang)
    assert proc.returncode == 0, proc.stderr
    assert "NOT COVERED: SGLang 0.4.4 is not covered" in proc.stdout
    assert "pip install 'sglang>=0.4.9,<=0.5.23'" in proc.stdout
    assert "Please report" not in proc.stdout
    applying = [line.split()[0] for line in proc.stdout.splitlines() if "will apply" in line]
    assert applying == ["safety-net", "safety-net-autotune"], proc.stdout
    assert "has no plugin group" in proc.stdout


def test_check_coverage_message():
    """`check` refuses through versions.coverage("check") (cli/check.py calls it)."""
    from sglang_consumer_gpu.versions import coverage

    assert coverage("check", "0.5.23").covered and coverage("runtime", "0.5.10").covered
    old = coverage("check", "0.5.10")
    assert not old.covered and "SGLang 0.5.10 is not covered by `check`" in old.message and old.advice
    assert not coverage("runtime", "0.5.24").covered and not coverage("runtime", "0.4.8").covered
    assert coverage("runtime", "0.5.20+cu128").covered
