"""Calibration of an emulation against fused-MoE files tuned on real consumer GPUs.

SGLang and vLLM ship fused-MoE config files tuned on real Ada GPUs (RTX 4090, L40S,
RTX 6000 Ada; bundled here with their provenance, ``moe/configs/manifest.json``). A file's
entry for a batch size is what its tuner found fastest on the real card. If an emulation
runs what that card runs, the real pick should time near the best config of the same
feasible space under it; if it does not, rankings measured under the emulation do not
carry to the card.

:func:`plan` builds, per file, the sweep of :mod:`~sglang_consumer_gpu.measure.moe_sweep`
(the feasible space for an sm_89 GPU of 101,376 B per block, pruned as there) with the
file's pick as one more named config at each batch size. :func:`~.moe_sweep.run_sweep`
times it on the live GPU under whatever emulation the process runs (``emulate --gpu
"RTX 4090"`` for the arch-faithful one, ``--limit-only`` for sm_90 code under the limit), and
:func:`summarize` reports, per point, the pick's speed over the best's (from the finalists'
interleaved re-timing) and its rank in the single sweep; :func:`compare` sets the modes
side by side.

The ground truth is noisy, and the report says how: the files were tuned with Triton
3.1-3.4 (the device runs 3.6; code generation changed between them), by single-run
searches (SGLang's tuner times each config once), on cards with a third of an H100's
memory bandwidth (1,008 GB/s RTX 4090, 864 GB/s L40S, 960 GB/s RTX 6000 Ada), 128-142 SMs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.moe.shape import MoeShape

#: Batch sizes timed per file: decode, small batch, mid, prefill.
GRID: tuple[int, ...] = (1, 16, 256, 1024)


@dataclass(frozen=True)
class TunedFile:
    """A bundled file tuned on a real sm_89 card, and the layer it was tuned for."""

    file: str  # name in sglang_consumer_gpu/moe/configs
    model: str  # the model (and TP) whose layer the name's E and N are
    K: int  # hidden size: not in the file name, from the model's config.json
    topk: int
    #: the model's activations are quantized per token (channel-INT8): SGLang runs the layer so, and asks
    #: for a ``per_channel_quant=True`` file, although this one, tuned before that suffix existed, lacks it
    per_channel_quant: bool = False

    def shape(self) -> MoeShape:
        fields = dict(p.split("=", 1) for p in self.file.removesuffix(".json").split(",") if "=" in p)
        return MoeShape(
            E=int(fields["E"]),
            N=int(fields["N"]),
            K=self.K,
            topk=self.topk,
            dtype=fields.get("dtype"),
            per_channel_quant=self.per_channel_quant or fields.get("per_channel_quant") == "True",
        )


#: The sm_89 files whose model is known (E and N identify it with the TP size; K and top-k come from
#: the model's config.json). Left out: E=128,N=1856/N=928 L40S (NVIDIA Nemotron-H: its experts are
#: not gated, w13 has N rows, not 2N, so SGLang's gated layer here is another shape).
FILES: tuple[TunedFile, ...] = (
    TunedFile("E=8,N=3584,device_name=NVIDIA_L40S.json", "Mixtral-8x7B TP4", 4096, 2),
    TunedFile("E=8,N=3584,device_name=NVIDIA_GeForce_RTX_4090,dtype=fp8_w8a8.json", "Mixtral-8x7B TP4", 4096, 2),
    TunedFile("E=64,N=640,device_name=NVIDIA_GeForce_RTX_4090,dtype=fp8_w8a8.json", "Qwen2-57B-A14B TP4", 3584, 8),
    TunedFile(
        "E=128,N=352,device_name=NVIDIA_RTX_6000_Ada_Generation,dtype=fp8_w8a8.json", "GLM-4.5-Air TP4", 4096, 8
    ),
    TunedFile("E=256,N=512,device_name=NVIDIA_L40S,dtype=fp8_w8a8.json", "DeepSeek-V3 TP4", 7168, 8),
    TunedFile("E=256,N=64,device_name=NVIDIA_L40S,dtype=int8_w8a8.json", "DeepSeek-R1-Channel-INT8 TP32", 7168, 8, True),
)


def file_picks(f: TunedFile) -> dict[int, dict[str, int]]:
    """The file's entries (validated as the lookup validates them), by batch size."""
    from sglang_consumer_gpu.moe.sources import BUNDLED_DIR
    from sglang_consumer_gpu.moe.validate import load_config_file

    shape = f.shape()
    return load_config_file(BUNDLED_DIR / f.file, dtype=shape.dtype, block_shape=None, spec=None)


def plan(spec: Any, files: Iterable[TunedFile] = FILES, grid: Iterable[int] = GRID) -> dict[str, Any]:
    """The sweep plan: per file, the feasible space for ``spec`` and, per batch size, the file's
    pick (SGLang's nearest-entry rule), SGLang's default and the plugin's heuristic."""
    from sglang_consumer_gpu.families.moe import sweep_points
    from sglang_consumer_gpu.measure import moe_sweep
    from sglang_consumer_gpu.measure.moe import launch_config
    from sglang_consumer_gpu.moe.lookup import nearest

    cases = []
    for f in files:
        shape = f.shape()
        picks = file_picks(f)
        space, size = moe_sweep.bound_space(spec, shape)
        points = sweep_points(spec, shape, grid)
        for p in points:
            p["pick"] = launch_config(picks[nearest(picks, p["M"])])
        cases.append({"name": f"{f.model} ({f.file.split('device_name=')[1].split(',')[0].removesuffix('.json')})",
                      "file": f.file, "E": shape.E, "N": shape.N, "K": shape.K, "topk": shape.topk,
                      "dtype": shape.dtype, "per_channel_quant": shape.per_channel_quant,
                      "space": space, "candidates": size, "points": points})  # fmt: skip
    return {"cases": cases, "plan_file": "in-process", "spec": spec.to_dict()}


#: The other named configs of every point, reported beside the real card's pick: what the plugin
#: and SGLang alone would run for the same shape on the emulated GPU.
OTHERS = ("heuristic", "default")


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per file and batch size: the pick's speed over the best's, its rank in the sweep, and the
    same ratio for the plugin's heuristic and SGLang's default, timed in the same sweep."""
    rows = []
    for c in results["cases"]:
        for p in c["points"]:
            if not p.get("best") or "pick" not in p:
                continue
            pick_key = _key(p["pick"]["config"])
            sweep = p["space_us"]
            rank = 1 + sum(1 for v in sweep.values() if v < sweep.get(pick_key, math.inf)) if pick_key in sweep else None
            rows.append({"case": c["name"], "dtype": c["dtype"] or "bf16", "M": p["M"],
                         "pick_vs_best": p["best"]["us"] / p["pick"]["us"], "rank": rank, "timed": len(sweep),
                         "pick": pick_key, "best": _key(p["best"]["config"]),
                         **{f"{n}_vs_best": p["best"]["us"] / p[n]["us"] for n in OTHERS if p.get(n, {}).get("us")},
                         "spread": p.get("finalists_spread")})  # fmt: skip
    return rows


def _key(cfg: dict[str, Any]) -> str:
    from sglang_consumer_gpu.measure.moe import config_key

    return config_key(cfg)


def compare(by_mode: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Modes side by side: per file and overall, geomean and minimum of pick/best and the
    ranks; overall, the median of rank/timed (the lower, the more the emulation ranks the real
    card's pick near the top) and the heuristic's and SGLang default's geomean over the best."""
    from statistics import median

    from sglang_consumer_gpu.measure.common import geomean

    out: dict[str, Any] = {"modes": {}, "points": {}}
    for mode, res in by_mode.items():
        rows = summarize(res)
        per_case: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            per_case.setdefault(r["case"], []).append(r)
            out["points"].setdefault(f"{r['case']}|{r['M']}", {})[mode] = r
        ranked = [r["rank"] / r["timed"] for r in rows if r["rank"]]
        out["modes"][mode] = {
            "device": res.get("device"),
            "files": {c: {"geomean": geomean([r["pick_vs_best"] for r in rs]),
                          "min": min(r["pick_vs_best"] for r in rs),
                          "ranks": [r["rank"] for r in rs], "M": [r["M"] for r in rs]}
                      for c, rs in per_case.items()},
            "geomean": geomean([r["pick_vs_best"] for r in rows]),
            "min": min((r["pick_vs_best"] for r in rows), default=math.nan),
            "points": len(rows),
            "median_rank_fraction": median(ranked) if ranked else math.nan,
            "top5": sum(1 for r in rows if r["rank"] and r["rank"] <= 5),
            **{n: {"geomean": geomean(v), "min": min(v)}
               for n in OTHERS if (v := [r[f"{n}_vs_best"] for r in rows if f"{n}_vs_best" in r])},
        }  # fmt: skip
    return out


def table(cmp: dict[str, Any]) -> str:
    """The calibration table (markdown): one row per file, a column pair per mode."""
    modes = list(cmp["modes"])
    head = "| file (card) | " + " | ".join(f"{m}: pick/best geomean (min); ranks" for m in modes) + " |"
    lines = [head, "|---|" + "---|" * len(modes)]
    cases = sorted({c for m in modes for c in cmp["modes"][m]["files"]})
    for c in cases:
        cells = []
        for m in modes:
            f = cmp["modes"][m]["files"].get(c)
            cells.append(f"{f['geomean']:.3f} ({f['min']:.3f}); {f['ranks']}" if f else "-")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    overall = [cmp["modes"][m] for m in modes]
    lines.append(
        "| **all** | "
        + " | ".join(f"**{o['geomean']:.3f}** ({o['min']:.3f}), {o['points']} points" for o in overall)
        + " |"
    )
    lines.append(
        "| real pick's rank / configs timed (median); picks in the top 5 | "
        + " | ".join(f"{o['median_rank_fraction']:.2f}; {o['top5']} of {o['points']}" for o in overall)
        + " |"
    )
    for n, label in (("heuristic", "plugin's heuristic / best"), ("default", "SGLang's default / best")):
        cells = [f"{o[n]['geomean']:.3f} ({o[n]['min']:.3f})" if n in o else "-" for o in overall]
        lines.append(f"| {label}, geomean (min) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(cmp: dict[str, Any], path: Any) -> None:
    """Pick/best per point, one marker per mode (the closer to 1, the more the emulation agrees with the card)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(cmp["points"], key=lambda k: (k.split("|")[0], int(k.split("|")[1])))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.35 * len(keys)), 4.4))
    for i, mode in enumerate(cmp["modes"]):
        xs = [j for j, k in enumerate(keys) if mode in cmp["points"][k]]
        ys = [cmp["points"][keys[j]][mode]["pick_vs_best"] for j in xs]
        ax.plot([x + 0.15 * i for x in xs], ys, "o", label=f"{mode}: geomean {cmp['modes'][mode]['geomean']:.3f}")
    ax.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([k.replace("|", " M=") for k in keys], rotation=75, fontsize=6)
    ax.set_ylabel("real card's pick: best us / pick us")
    ax.set_title("Fused-MoE files tuned on real Ada cards, timed under each emulation", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
