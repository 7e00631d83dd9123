"""Activation in real interpreters against the real SGLang 0.5.23: the .pth
import watcher, SGLang's load_plugins() entry point, spawn children, the off
switch and fault injection."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import RTX_4090, run_python, run_python_json

TESTS = str(Path(__file__).parent)
CFG = "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config"
FUSED = "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe"
PROBE_ENV = {
    "SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090,
    "SGLANG_CONSUMER_GPU_EXTRA_PATCH_MODULES": "_probe_patches",
    "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
}

REPORT = f"""
    import json
    from sglang_consumer_gpu import activation
    from sglang_consumer_gpu.patching import registry, watcher
    import {CFG} as cfg, {FUSED} as fused
    marker = getattr(cfg.get_config_dtype_str, registry.MARKER, None)
    per_module = {{}}
    for p in registry.patches():
        seam = p.current_seam()
        if seam is not None:
            per_module[seam.module] = per_module.get(seam.module, 0) + 1
    print(json.dumps({{
        "hooks_per_patch": {{m: len(watcher._finder.hooks.get(m, [])) / n for m, n in per_module.items()}},
        "paths": activation.active_paths(),
        "results": {{k: [v.status.value, v.detail] for k, v in registry.results().items()}},
        "installed": {{p.name: registry.installed(p) for p in registry.patches()}},
        "probe_in_cfg": marker is not None and marker[0] == "probe",
        "fused_sees_same": fused.get_config_dtype_str is cfg.get_config_dtype_str,
        "wrapped_once": marker is not None and not hasattr(marker[1], registry.MARKER),
    }}))
"""


def test_import_watcher_patches_on_first_import() -> None:
    out = run_python_json(
        (
            f"""
        import sys
        assert "sglang" not in sys.modules
        import {FUSED}
        """,
            REPORT,
        ),
        env=PROBE_ENV,
    )
    assert out["paths"] == ["import-watcher"]
    assert out["results"]["probe"][0] == "applied"
    assert out["probe_in_cfg"] and out["fused_sees_same"] and out["wrapped_once"]


def test_builtin_patches_apply_under_virtual_rtx_4090() -> None:
    """Every built-in patch an RTX 4090 needs is applied once its target loads;
    the others say they are not needed (e.g. int8: sgl-kernel has SM89 tiles)."""
    out = run_python_json(
        """
        import json, importlib
        from sglang_consumer_gpu.hardware import find_gpu
        from sglang_consumer_gpu.patching import registry
        from sglang_consumer_gpu.activation import activate
        activate()
        for m in sorted({p.current_seam().module for p in registry.patches()}):
            try:
                importlib.import_module(m)
            except ImportError:
                pass
        spec = find_gpu("NVIDIA GeForce RTX 4090")
        print(json.dumps({p.name: [registry.results()[p.name].status.value, registry.installed(p),
                                   p.needed_on(spec)] for p in registry.patches()}))
        """,
        env={"SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090},
    )
    assert out, "no built-in patches registered"
    assert any(needed for _, _, needed in out.values()), "no built-in patch is for an RTX 4090"
    for name, (status, installed, needed) in out.items():
        if needed:
            assert status in ("applied", "already fixed upstream"), (name, status)
        else:
            assert status == "not needed on this GPU", (name, status)
        assert installed == (status == "applied"), name


def test_off_switch_patches_nothing() -> None:
    out = run_python_json((f"import {FUSED}", REPORT), env={**PROBE_ENV, "SGLANG_CONSUMER_GPU": "0"})
    assert out["paths"] == []
    assert not any(out["installed"].values())
    assert not out["probe_in_cfg"]


def test_off_switch_also_stops_entry_point() -> None:
    out = run_python_json(
        (
            f"""
        from sglang.srt.plugins import load_plugins
        load_plugins()
        import {FUSED}
        """,
            REPORT,
        ),
        env={**PROBE_ENV, "SGLANG_CONSUMER_GPU": "0"},
    )
    assert not any(out["installed"].values())


def test_load_plugins_runs_entry_point_and_both_paths_patch_once() -> None:
    out = run_python_json(
        (
            f"""
        import logging
        logging.basicConfig(level=logging.INFO)
        import {FUSED}
        from sglang.srt.plugins import load_plugins
        load_plugins()
        load_plugins()
        """,
            REPORT,
        ),
        env=PROBE_ENV,
    )
    assert out["paths"] == ["import-watcher", "entry-point"]
    assert out["results"]["probe"][0] == "applied"
    assert out["probe_in_cfg"] and out["fused_sees_same"] and out["wrapped_once"]
    assert set(out["hooks_per_patch"].values()) == {1.0}, out["hooks_per_patch"]  # not one per activation


def test_entry_point_alone_rebinds_already_imported_references() -> None:
    """SGLang versions or launchers where the .pth did not run: load_plugins()
    must patch modules that were imported before it, including the copies made
    by ``from module import name``."""
    proc = run_python(
        (
            f"""
        import sys, logging
        logging.basicConfig(level=logging.INFO)
        sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_SglangImportTrigger"]
        import {FUSED}
        from sglang_consumer_gpu.patching import registry
        assert not registry.results(), "nothing may be patched before load_plugins()"
        from sglang.srt.plugins import load_plugins
        load_plugins()
        """,
            REPORT,
        ),
        env=PROBE_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["paths"] == ["entry-point"]
    assert out["probe_in_cfg"] and out["fused_sees_same"]
    # the per-process INFO summary line
    assert "sglang-consumer-gpu active (entry-point) for NVIDIA GeForce RTX 4090" in proc.stderr


def test_summary_waits_for_logging_when_plugins_load_first() -> None:
    """SGLang's scheduler calls load_plugins() before it configures logging: the INFO summary
    is held until the first call of a patched function, after logging is set up."""
    proc = run_python(
        f"""
        import logging
        from sglang.srt.plugins import load_plugins
        load_plugins()  # logging not configured yet, as in SGLang's run_scheduler_process
        logging.basicConfig(level=logging.INFO)
        import {CFG} as cfg
        print("CONFIGURED", flush=True)
        import sys
        sys.stderr.write("MARK\\n")
        cfg.get_config_dtype_str(None)  # the probe patch: a patched function's first call
        cfg.get_config_dtype_str(None)
        """,
        env=PROBE_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    before, _, after = proc.stderr.partition("MARK")
    assert "sglang-consumer-gpu active (" not in before, proc.stderr
    assert after.count("sglang-consumer-gpu active (") == 1, proc.stderr
    assert "for NVIDIA GeForce RTX 4090" in after


def test_spawn_child_is_patched() -> None:
    out = run_python_json(
        """
        import json, multiprocessing as mp
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        import _spawn_probe
        p = ctx.Process(target=_spawn_probe.probe, args=(q,))
        p.start()
        res = q.get(timeout=240)
        p.join(60)
        print(json.dumps(res))
        """,
        env=PROBE_ENV,
    )
    assert out["results"]["probe"] == "applied"
    assert out["installed"]["probe"] is True


def test_fault_injection_statuses_and_logs() -> None:
    proc = run_python(
        f"""
        import json, logging
        logging.basicConfig(level=logging.WARNING)
        import {FUSED}
        from sglang_consumer_gpu.patching import registry
        lazy = {{k: v.status.value for k, v in registry.results().items()}}
        registry.apply_all()
        final = {{k: [v.status.value, v.detail] for k, v in registry.results().items()}}
        print(json.dumps({{"lazy": lazy, "final": final}}))
        """,
        env=PROBE_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lazy"]["missing_module"] == "waiting for import"
    final = out["final"]
    assert final["probe"][0] == "applied"
    assert final["missing_attr"][0] == "target missing" and "no_such_function" in final["missing_attr"][1]
    assert final["missing_module"][0] == "target missing"
    assert final["raises"][0] == "failed" and "boom: injected failure" in final["raises"][1]
    # said once each, although apply_all() tried them again after the import hooks did
    assert proc.stderr.count("patch raises failed and was skipped: RuntimeError: boom") == 1
    assert proc.stderr.count("patch missing_attr skipped, target") == 1


def test_call_time_failure_falls_back_to_sglang_for_that_call_only() -> None:
    """A replacement that raises for one input: SGLang answers that call, the
    patch keeps answering the others, one WARNING says so and the status counts it."""
    proc = run_python(
        f"""
        import json, logging
        logging.basicConfig(level=logging.WARNING)
        from sglang_consumer_gpu.patching import registry
        from sglang_consumer_gpu.patching.base import Patch
        def build(original, module):
            def picky(dtype, **flags):
                if flags.get("use_fp8_w8a8"):
                    raise ZeroDivisionError("bad decision")
                return "plugin:" + str(original(dtype, **flags))
            return picky
        registry.register(Patch(name="breaks_sometimes", module="{CFG}", attr="get_config_dtype_str",
                                why="test", build=build))
        import {CFG} as cfg
        import torch
        answers = [cfg.get_config_dtype_str(torch.bfloat16, use_fp8_w8a8=True) for _ in range(3)]
        answers.append(cfg.get_config_dtype_str(torch.bfloat16))
        print(json.dumps({{"answers": answers, "result": registry.results()["breaks_sometimes"].to_dict()}}))
        """,
        env={"SGLANG_CONSUMER_GPU_VIRTUAL": RTX_4090},
    )
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["answers"] == ["fp8_w8a8"] * 3 + ["plugin:None"]  # SGLang's own answer, then the patch's
    assert out["result"]["status"] == "applied"
    assert (
        out["result"]["fallbacks"] == 3 and "ZeroDivisionError: bad decision" in out["result"]["last_error"]
    )
    lines = [line for line in proc.stderr.splitlines() if "breaks_sometimes raised" in line]
    assert len(lines) == 1 and "stays on for other calls" in lines[0], proc.stderr


def test_no_gpu_means_unpatched() -> None:
    out = run_python_json((f"import {FUSED}", REPORT), env={**PROBE_ENV, "SGLANG_CONSUMER_GPU_VIRTUAL": ""})
    assert out["results"]["probe"][0] == "not needed on this GPU"
    assert "no NVIDIA GPU" in out["results"]["probe"][1]
    assert not out["probe_in_cfg"]
