"""The checks layer: providers as objects, a broken provider fails `check` loudly, `--only`
is validated at once, exit codes count the plugin's choices, the progress bar has a total."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import tqdm
from conftest import run_python_json

from sglang_consumer_gpu.checks import registry
from sglang_consumer_gpu.cli import main
from sglang_consumer_gpu.oracle.item import CheckItem, finish
from sglang_consumer_gpu.oracle.target import Resources

RTX_4090 = "NVIDIA GeForce RTX 4090"


def _res(shared: int, limit: int = 101_376) -> Resources:
    return Resources("k", "sm_89", shared, limit, 4, 2)


@dataclass(frozen=True)
class FixedProvider:
    """Pending items whose compile results are given (the oracle itself is tested elsewhere)."""

    area: str
    shared: tuple[int, ...]
    baseline: bool = False

    def items(self, spec, *, full):
        for n in self.shared:
            yield CheckItem(kernel="k", config=f"{self.area} {n}", run=lambda n=n: _res(n))


@dataclass(frozen=True)
class ImportBrokenProvider:
    """A provider whose kernel module cannot be imported (moved, renamed, not installed)."""

    area: str = "broken-import"
    baseline: bool = False

    def items(self, spec, *, full):
        import sglang_consumer_gpu.oracle.kernels.no_such_kernel  # noqa: F401

        yield CheckItem(config="never")


@dataclass(frozen=True)
class RaisingProvider:
    """A provider that lists one item and then raises."""

    area: str = "raises"
    baseline: bool = False

    def items(self, spec, *, full):
        yield CheckItem(kernel="k", config="first", run=lambda: _res(1))
        raise RuntimeError("SGLang moved its config helper")


@pytest.fixture
def providers(monkeypatch):
    def use(plugin, baseline=()):
        monkeypatch.setattr(registry, "PROVIDERS", tuple(plugin))
        monkeypatch.setattr(registry, "BASELINE_PROVIDERS", tuple(baseline))

    return use


def test_the_registry_holds_one_provider_object_per_area():
    areas = registry.areas()
    assert areas == ["moe", "attention", "int8", "cutlass-moe", "fp8-moe", "moe-baseline", "attention-baseline",
                     "fp8-moe-baseline"]  # fmt: skip
    assert len(set(areas)) == len(areas)
    assert all(not p.baseline for p in registry.PROVIDERS) and all(
        p.baseline for p in registry.BASELINE_PROVIDERS
    )


def test_a_provider_that_cannot_import_fails_check_and_is_named(providers, capsys):
    providers([FixedProvider("good", (10,)), ImportBrokenProvider()])
    rc = main(["check", "--gpu", RTX_4090])
    cap = capsys.readouterr()
    assert rc == 3
    assert "the broken-import provider broke: ModuleNotFoundError" in cap.err
    assert "no_such_kernel" in cap.err
    assert "good: 1/1 pass" in cap.out  # the other areas are still checked and shown


def test_a_provider_that_raises_keeps_what_it_listed_and_fails_check(providers, capsys):
    providers([RaisingProvider()])
    rc = main(["check", "--gpu", RTX_4090, "--json"])
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert rc == 3 and out["summary"]["exit_status"] == 3
    assert out["summary"]["broken_providers"] == [
        {"area": "raises", "error": "RuntimeError: SGLang moved its config helper"}
    ]
    assert [i["config"] for i in out["items"]] == ["first"]
    assert "raises provider broke" in cap.err


def test_unknown_area_lists_the_valid_ones_and_exits_2_at_once(capsys):
    rc = main(["check", "--gpu", RTX_4090, "--only", "nonsense"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown area 'nonsense'" in err
    for area in registry.areas():
        assert area in err
    # at once: refused before SGLang, torch or Triton is even imported
    done = run_python_json("""
        import json, sys
        from sglang_consumer_gpu.cli import main
        rc = main(["check", "--gpu", "4090", "--only", "nonsense"])
        heavy = sorted(m for m in ("sglang", "torch", "triton") if m in sys.modules)
        print(json.dumps({"rc": rc, "heavy": heavy}))
    """)
    assert done == {"rc": 2, "heavy": []}


def test_baseline_fails_do_not_set_the_exit_status_unless_named(providers, capsys):
    providers([FixedProvider("plugin", (10,))], [FixedProvider("sglang-baseline", (200_000,), baseline=True)])
    assert main(["check", "--gpu", RTX_4090]) == 0
    capsys.readouterr()
    assert main(["check", "--gpu", RTX_4090, "--baseline"]) == 0
    out = capsys.readouterr().out
    assert "sglang-baseline: 0/1 pass" in out and "not counted in the exit status" in out
    assert main(["check", "--gpu", RTX_4090, "--only", "sglang-baseline"]) == 1
    capsys.readouterr()
    providers([FixedProvider("plugin", (10, 200_000))])
    assert main(["check", "--gpu", RTX_4090]) == 1


def test_only_selects_providers_before_listing_items(providers, capsys):
    providers([FixedProvider("a", (1,)), ImportBrokenProvider()])
    rc = main(["check", "--gpu", RTX_4090, "--only", "a", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and {i["area"] for i in out["items"]} == {"a"}  # the broken one was never asked


def test_progress_bar_knows_the_total(providers, monkeypatch, capsys):
    totals: list[int | None] = []

    class Recording(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            totals.append(self.total)

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    providers([FixedProvider("a", (1, 2, 3)), FixedProvider("b", (4, 5))])
    assert main(["check", "--gpu", RTX_4090]) == 0
    assert totals == [2, 5]  # listing the two providers, then compiling their five items


def test_finish_runs_a_pending_item_once_per_kernel_and_turns_a_raise_into_fail():
    two = CheckItem(area="a", kernel="x", config="c", run=lambda: [_res(1), _res(2)])
    assert [i.resources.shared for i in finish(two)] == [1, 2]

    def boom():
        raise ValueError("first line\nlast line says why")

    (failed,) = finish(CheckItem(area="a", kernel="x", config="c", run=boom))
    assert failed.status == "FAIL" and failed.error == "ValueError: last line says why"
    (empty,) = finish(CheckItem(area="a", kernel="x", config="c", run=list))
    assert empty.error == "compiled no kernel"
    skip = CheckItem(area="a", config="c", skip="cannot run here")
    assert finish(skip) == [skip] and skip.status == "SKIP" and not skip.ok
