from __future__ import annotations

import pytest

from sglang_consumer_gpu.hardware import GpuSpec, current_spec, find_gpu, override_spec
from sglang_consumer_gpu.hardware.catalog import KNOWN_GPUS


@pytest.mark.parametrize(
    ("query", "name", "cap", "smem"),
    [
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", (8, 9), 101376),
        ("NVIDIA_GeForce_RTX_4090", "NVIDIA GeForce RTX 4090", (8, 9), 101376),
        ("rtx 3090", "NVIDIA GeForce RTX 3090", (8, 6), 101376),
        ("L40S", "NVIDIA L40S", (8, 9), 101376),
        ("RTX 5090", "NVIDIA GeForce RTX 5090", (12, 0), 101376),
        ("Tesla T4", "Tesla T4", (7, 5), 65536),
        ("H100 80GB HBM3", "NVIDIA H100 80GB HBM3", (9, 0), 232448),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", (8, 0), 166912),
    ],
)
def test_find_gpu(query: str, name: str, cap: tuple[int, int], smem: int) -> None:
    spec = find_gpu(query)
    assert (spec.name, spec.capability, spec.smem_per_block_optin) == (name, cap, smem)


def test_required_gpus_are_in_catalog() -> None:
    names = {g.name for g in KNOWN_GPUS}
    for required in [
        "NVIDIA GeForce RTX 3090",
        "NVIDIA GeForce RTX 4090",
        "NVIDIA L4",
        "NVIDIA L40S",
        "NVIDIA RTX 6000 Ada Generation",
        "NVIDIA GeForce RTX 5090",
        "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        "NVIDIA A10",
        "Tesla T4",
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA H100 80GB HBM3",
    ]:
        assert required in names


def test_catalog_is_consistent() -> None:
    for g in KNOWN_GPUS:
        assert g.sm_count > 0 and g.memory_bytes > 0 and g.memory_bandwidth_gbps > 0, g
        assert g.is_low_smem == (g.capability in {(7, 5), (8, 6), (8, 9), (12, 0)}), g


def test_config_device_name_matches_sglang_file_names() -> None:
    # SGLang ships E=64,N=640,device_name=NVIDIA_GeForce_RTX_4090,dtype=fp8_w8a8.json
    assert find_gpu("RTX 4090").config_device_name == "NVIDIA_GeForce_RTX_4090"


def test_arch_spec() -> None:
    spec = find_gpu("sm_89")
    assert spec.capability == (8, 9) and spec.smem_per_block_optin == 101376 and spec.arch_name == "sm_89"
    with pytest.raises(ValueError, match="unknown compute capability"):
        GpuSpec.for_arch(4, 2)


@pytest.mark.parametrize("bad", ["", "RTX 9999", "RTX"])
def test_find_gpu_rejects_unknown_or_ambiguous(bad: str) -> None:
    with pytest.raises(ValueError):
        find_gpu(bad)


def test_override_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_VIRTUAL", "L40S")
    assert current_spec() == find_gpu("L40S")
    with override_spec(find_gpu("RTX 5090")):
        assert current_spec().name == "NVIDIA GeForce RTX 5090"
    assert current_spec().name == "NVIDIA L40S"
    monkeypatch.setenv("SGLANG_CONSUMER_GPU_VIRTUAL", "no such gpu")
    # A bad virtual name is logged and ignored: this machine has no GPU.
    assert current_spec() is None or current_spec().source == "live"


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("RTX4090", "NVIDIA GeForce RTX 4090"),
        ("NVIDIA RTX 4090", "NVIDIA GeForce RTX 4090"),
        ("nvidia  geforce rtx-4090", "NVIDIA GeForce RTX 4090"),
        ("rtx 4090d", "NVIDIA GeForce RTX 4090 D"),
        ("RTX 4060", "NVIDIA GeForce RTX 4060"),
        ("4070", "NVIDIA GeForce RTX 4070"),
        ("RTX 3060", "NVIDIA GeForce RTX 3060"),
        ("rtx 5070 ti", "NVIDIA GeForce RTX 5070 Ti"),
        ("RTX A6000", "NVIDIA RTX A6000"),
        ("RTX 6000 Ada", "NVIDIA RTX 6000 Ada Generation"),
        ("RTX PRO 5000 Blackwell", "NVIDIA RTX PRO 5000 Blackwell"),
        ("l20", "NVIDIA L20"),
    ],
)
def test_names_as_users_type_them(typed: str, name: str) -> None:
    assert find_gpu(typed).name == name


def test_unknown_name_suggests_the_closest_not_the_whole_list() -> None:
    with pytest.raises(ValueError) as info:
        find_gpu("RTX 4095")
    text = str(info.value)
    assert "closest known: NVIDIA GeForce RTX 4090" in text and "Tesla T4" not in text
    with pytest.raises(
        ValueError, match="ambiguous; it matches NVIDIA RTX PRO 6000 Blackwell Workstation Edition"
    ):
        find_gpu("RTX PRO 6000")


def test_catalog_covers_consumer_and_workstation_cards_of_each_low_smem_arch() -> None:
    by_arch: dict[tuple[int, int], list[str]] = {}
    for g in KNOWN_GPUS:
        by_arch.setdefault(g.capability, []).append(g.name)
    for arch, must in {
        (8, 6): ["RTX 3060", "RTX 3070", "RTX 3080", "RTX 3090", "RTX A4000", "RTX A5000", "RTX A6000"],
        (8, 9): ["RTX 4060", "RTX 4070", "RTX 4080", "RTX 4090", "RTX 4000 Ada", "RTX 6000 Ada", "L40S"],
        (12, 0): ["RTX 5060", "RTX 5070", "RTX 5080", "RTX 5090", "RTX PRO 4000", "RTX PRO 6000"],
    }.items():
        for fragment in must:
            assert any(fragment in n for n in by_arch[arch]), (arch, fragment)
    assert len({g.name for g in KNOWN_GPUS}) == len(KNOWN_GPUS)
