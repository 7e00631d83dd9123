"""The selftest runner, report, command line and shipped tests, on a machine without a GPU.

The runner runs for real here: SGLang's own kernels under Triton's interpreter
(``TRITON_INTERPRET=1``, CPU tensors, small shapes, fp16 -- the interpreter's bf16 dots are
wrong, see test_measure_moe), with the plugin activated in a fresh interpreter. SGLang's
extend/prefill modules read the GPU's capability at import; the subprocess sets it to the
spec's, as a live RTX 5090 would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sglang_consumer_gpu.families.cases import FAIL, PASS, SKIP, Case, Result
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.measure.report import write_json
from sglang_consumer_gpu.selftest import report as R
from sglang_consumer_gpu.selftest.plan import Plan
from tests.conftest import run_python, run_python_json

ROOT = Path(__file__).resolve().parents[1]

RUNNER = """
import json
from sglang_consumer_gpu.hardware import find_gpu
from sglang_consumer_gpu.int8.tiles import select_tile
from sglang_consumer_gpu.measure import attention as ma
from sglang_consumer_gpu.measure.attention import ExtendCase, PrefillCase
from sglang_consumer_gpu.measure.moe import MoeCase, launch_config
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.families import attention, moe
from sglang_consumer_gpu.families.attention import AttentionRun
from sglang_consumer_gpu.families.cases import Case
from sglang_consumer_gpu.families.int8 import Int8Run
from sglang_consumer_gpu.families.moe import MoeRun
from sglang_consumer_gpu.families.safety_net import DATACENTER_MOE_TILE
from sglang_consumer_gpu.selftest.plan import Plan
from sglang_consumer_gpu.selftest.report import Report
from sglang_consumer_gpu.selftest.run import session

spec = find_gpu("NVIDIA GeForce RTX 5090")
cases = []
for dtype, block, pc in [(None, None, False), ("fp8_w8a8", (128, 128), False), ("int8_w8a8", None, True)]:
    shape = MoeShape(4, 128, 256, 2, dtype, block, pc)
    pick = moe.plugin_choice(spec, shape, 5)
    cases.append(Case("moe", f"moe {dtype}", "fused_moe_kernel", "", pick.source,
                      MoeRun(MoeCase(shape, 5, "float16"), launch_config(pick.up))))
shape = MoeShape(4, 128, 256, 2)
right = launch_config(moe.plugin_choice(spec, shape, 5).up)
wrong = dict(right, BLOCK_SIZE_N=64 if right["BLOCK_SIZE_N"] != 64 else 32)
cases.append(Case("moe", "not the lookup's", "fused_moe_kernel", "", "", MoeRun(MoeCase(shape, 5, "float16"), wrong)))
ext = ExtendCase(64, 64, 2, 1, (20, 7), (9, 0), dtype="float16")
plugin, sglang = attention.extend_tiles(spec, 64, 64)
cases.append(Case("attention", "extend", "", "", "", AttentionRun(ext, plugin, sglang)))
cases.append(Case("attention", "extend, not the patch's tile", "", "", "", AttentionRun(ext, (16, 16, 4), sglang)))
pt, ps = attention.prefill_tiles(spec, 64)
cases.append(Case("attention", "prefill", "", "", "", AttentionRun(PrefillCase(64, 2, (40, 17), False, "float16"), pt, ps)))
tile = select_tile(spec, 5, 64, 128)
cases.append(Case("int8", "int8", "", "", "", Int8Run(64, 128, 5, "float16", True, "triton", tuple(tile.to_list()))))
cases.append(Case("safety", "safety", "", "", "",
                  MoeRun(MoeCase(shape, 5, "float16"), dict(DATACENTER_MOE_TILE), guarded=True)))
cases.append(Case("moe", "skipped by the plan", "", skip="a reason"))
plan = Plan(spec, "0.5.23", "quick", tuple(cases))
with ma._capability(ma._module(ma.EXTEND), spec.capability), ma._capability(ma._module(ma.PREFILL), spec.capability):
    with session(plan, device="cpu") as runner:
        runner.prepare()
        results = [runner.execute(c) for c in plan.cases]
doc = Report(plan, results, patches=runner.patches).to_dict()
print(json.dumps({"doc": doc, "lookup": runner.lookup}, default=str))
"""


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return run_python_json(RUNNER, env={"TRITON_INTERPRET": "1"}, timeout=900)


def test_runner_passes_the_plugins_paths(interpreted):
    by_name = {c["name"]: c for c in interpreted["doc"]["cases"]}
    for name in ("moe None", "moe fp8_w8a8", "moe int8_w8a8", "extend", "prefill", "int8"):
        assert by_name[name]["status"] == PASS, by_name[name]
        assert "<=" in by_name[name]["reason"]
    assert interpreted["lookup"]["moe None"] == "agrees"
    assert by_name["moe None"]["detail"]["lookup"] == "agrees"


def test_runner_fails_what_the_server_would_not_run(interpreted):
    by_name = {c["name"]: c for c in interpreted["doc"]["cases"]}
    assert by_name["not the lookup's"]["status"] == FAIL
    assert "SGLang's patched lookup returns" in by_name["not the lookup's"]["reason"]
    bad_tile = by_name["extend, not the patch's tile"]
    assert bad_tile["status"] == FAIL and "helper answers" in bad_tile["reason"]


def test_runner_reports_skips_and_the_exit_status(interpreted):
    doc = interpreted["doc"]
    by_name = {c["name"]: c for c in doc["cases"]}
    assert by_name["skipped by the plan"] == {
        **by_name["skipped by the plan"],
        "status": SKIP,
        "reason": "a reason",
    }
    # the interpreter never reaches Triton's compile path: the safety net has nothing to fit
    assert by_name["safety"]["status"] == SKIP and "nothing to do" in by_name["safety"]["reason"]
    assert doc["summary"]["exit_status"] == R.EXIT_FAIL
    assert doc["patches"]["moe-config-lookup"] == "applied"


# ------------------------------------------------------------------------------ report


def _result(status: str) -> Result:
    return Result(Case("moe", f"c-{status}", "k"), status, "why")


@pytest.mark.parametrize(
    ("statuses", "interrupted", "expected"),
    [
        ((PASS, SKIP), False, R.EXIT_PASS),
        ((PASS, FAIL, SKIP), False, R.EXIT_FAIL),
        ((SKIP, SKIP), False, R.EXIT_NOTHING_TESTED),
        ((), False, R.EXIT_NOTHING_TESTED),
        ((PASS,), True, R.EXIT_INTERRUPTED),
    ],
)
def test_exit_status(statuses, interrupted, expected):
    assert R.exit_status([_result(s) for s in statuses], interrupted=interrupted) == expected


def test_json_schema_and_atomic_write(tmp_path):
    plan = Plan(find_gpu("NVIDIA GeForce RTX 4090"), "0.5.23", "quick", (Case("moe", "c-PASS", "k"),))
    rep = R.Report(plan, [_result(PASS)], notes=["n"], seconds=1.5)
    doc = rep.to_dict()
    assert doc["schema"] == R.SCHEMA and doc["mode"] == "quick" and doc["gpu"]["arch"] == "sm_89"
    assert doc["summary"] == {"pass": 1, "fail": 0, "skip": 0, "planned": 1, "run": 1, "seconds": 1.5,
                              "interrupted": False, "exit_status": 0}  # fmt: skip
    case = doc["cases"][0]
    assert {
        "area",
        "name",
        "kernel",
        "config",
        "source",
        "status",
        "reason",
        "error",
        "bound",
        "detail",
    } <= set(case)
    path = tmp_path / "sub" / "selftest.json"
    write_json(path, doc)
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc))
    assert [p.name for p in path.parent.iterdir()] == ["selftest.json"]  # no temporary file left


# ------------------------------------------------------------------------------ command line


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_python(f"import sys; from sglang_consumer_gpu.cli import main; sys.exit(main({list(args)!r}))",
                      env=env)  # fmt: skip


def test_no_gpu_says_so_and_exits_4():
    proc = cli("selftest")
    assert proc.returncode == R.EXIT_NO_GPU
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no NVIDIA GPU visible" in lines[0] and "Traceback" not in proc.stderr
    proc = cli("selftest", "--json", "--quick")
    doc = json.loads(proc.stdout)
    assert proc.returncode == R.EXIT_NO_GPU and doc["summary"]["skip"] == 1 and doc["summary"]["pass"] == 0
    assert doc["summary"]["exit_status"] == R.EXIT_NO_GPU and doc["cases"][0]["status"] == SKIP


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("selftest", "--gpu", "RTX 4090"), "only go with --list"),
        (("selftest", "--list", "--gpu", "RTX 9999"), "unknown GPU"),
        (("selftest", "--list", "--gpu", "RTX 4090", "--model", "/no/such/model"), "no such directory"),
        (("selftest", "--list", "--gpu", "RTX 4090", "--smem", "-5"), "positive number of bytes"),
    ],
)
def test_bad_input_is_one_line(args, words):
    proc = cli(*args)
    assert proc.returncode == R.EXIT_BAD_INPUT
    assert (
        len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr and "Traceback" not in proc.stderr
    )


def test_list_a_capped_gpu_as_json():
    proc = cli("selftest", "--list", "--quick", "--json", "--gpu", "H200", "--smem", "101376")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["gpu"]["smem_per_block_optin"] == 101376 and doc["mode"] == "quick"
    assert {c["area"] for c in doc["cases"] if c["skip"] is None} == {"moe", "attention", "int8", "safety"}
    assert doc["kernel_compiles"] > 0


def test_list_with_a_model_that_is_not_moe(tmp_path):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
           "intermediate_size": 8192, "num_attention_heads": 16, "num_key_value_heads": 8,
           "num_hidden_layers": 4, "vocab_size": 32000, "torch_dtype": "bfloat16", "head_dim": 96}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    proc = cli("selftest", "--list", "--quick", "--gpu", "RTX 4090", "--model", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "not a MoE model" in proc.stdout and "Lq=96 Lv=96" in proc.stdout


def test_list_with_a_moe_model():
    proc = cli("selftest", "--list", "--quick", "--gpu", "RTX 4090", "--model",
               str(ROOT / "tests/fixtures/models/Qwen3-30B-A3B-FP8"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Qwen3-30B-A3B-FP8 fp8_w8a8 block E=128 N=768 K=2048 top8 M=1" in proc.stdout


def test_shipped_tests_skip_cleanly_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_CONSUMER_GPU")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "sglang_consumer_gpu.tests", "-q", "-rs", "-p",
                           "no:cacheprovider"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "no NVIDIA GPU visible" in proc.stdout
