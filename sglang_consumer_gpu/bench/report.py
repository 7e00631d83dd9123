"""The bench report as text and as a PNG plot.

The PNG needs matplotlib, an optional dependency (``pip install 'sglang-consumer-gpu[bench]'``):
the plugin itself, loaded into every SGLang process, has no use for it, and the JSON is the
result. Without it :func:`plot` raises :class:`PlotUnavailable` with that instruction, and
``bench --plot FILE.json`` draws the PNG later on any machine that has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sglang_consumer_gpu.families.bench_points import untimed
from sglang_consumer_gpu.measure.report import table

INSTALL_HINT = "pip install 'sglang-consumer-gpu[bench]' (or pip install matplotlib)"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _us(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, (int, float)) else "-"


def _speedup(row: dict[str, Any]) -> str:
    """The last column: the speed-up, or what happened to SGLang's own choice."""
    status = row["sglang"]["status"]
    if row.get("error"):
        return f"error: {row['error']}"
    if untimed(row):
        return "1.00 (same choice)"
    if row.get("speedup"):
        return f"{row['speedup']:.2f}x"
    return "SGLang alone " + status if status.startswith(("would fail", "failed")) else status


def text(doc: dict[str, Any]) -> str:
    gpu = doc["gpu"]
    ep = f" EP{doc['ep']}" if doc["ep"] > 1 else ""
    head = (
        f"{doc['model']['name']} TP{doc['tp']}{ep} on {gpu['name']} "
        f"({gpu['arch']}, {gpu['smem_per_block_optin']:,} B shared memory per block)"
    )
    parts = [head]
    if doc["moe"]:
        rows = []
        for r in doc["moe"]:
            check = r["plugin"].get("check")
            mark = "" if not check or check["ok"] else "  CHECK FAILED"
            rows.append((str(r["M"]), f"{r['plugin']['label']} ({r['plugin']['source']})", _us(r["plugin"]["us"]) + mark,
                         r["sglang"]["label"], _us(r["sglang"]["us"]), _speedup(r)))  # fmt: skip
        parts += [f"\nfused MoE {doc['model']['moe_layer']} ({doc['activation_dtype']} activations), "
                  "both GEMMs, us per layer call:",
                  table(rows, ("M", "plugin's config (source)", "plugin us", "SGLang alone", "SGLang us", "speed-up / SGLang alone"),
                        width=58)]  # fmt: skip
    if doc["attention"]:
        rows = [(r["kernel"], r["workload"], _tile(r["plugin"]["tile"]), _us(r["plugin"]["us"]), _tile(r["sglang"]["tile"]),
                 _us(r["sglang"]["us"]), _speedup(r)) for r in doc["attention"]]  # fmt: skip
        parts += ["\nextend attention, us per call:",
                  table(rows, ("kernel", "workload", "plugin tile", "plugin us", "SGLang tile", "SGLang us", "speed-up / SGLang alone"))]  # fmt: skip
    for note in doc["notes"]:
        parts.append(f"note: {note}")
    return "\n".join(parts)


def _tile(t: list[int]) -> str:
    return f"{t[0]}x{t[1]} w{t[2]}"


def plot(doc: dict[str, Any], path: Path) -> None:
    """Speed-up of the plugin's choice over SGLang's own: per batch size for fused MoE, per
    workload for attention; points where SGLang's own would fail are marked at the top."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"PNG not written: matplotlib is not installed; {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("moe", "attention") if doc[p]]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6.5 * max(1, len(panels)), 4.2), squeeze=False)
    gpu = doc["gpu"]
    for ax, key in zip(axes[0], panels, strict=False):
        rows = doc[key]
        xs = [r["M"] for r in rows] if key == "moe" else list(range(len(rows)))
        timed = [(x, r["speedup"]) for x, r in zip(xs, rows, strict=True) if r["sglang"]["status"] == "timed"]
        same = [x for x, r in zip(xs, rows, strict=True) if untimed(r)]
        fails = [
            x
            for x, r in zip(xs, rows, strict=True)
            if r["sglang"]["status"].startswith(("would fail", "failed"))
        ]
        if timed:
            ax.plot(*zip(*timed, strict=True), "o-", label="plugin vs SGLang alone (timed)")
        if same:
            ax.plot(same, [1.0] * len(same), "o", mfc="none", color="gray", label="same choice (1.0)")
        top = max([y for _, y in timed] + [1.2])
        if fails:
            ax.plot(
                fails,
                [top * 1.08] * len(fails),
                "x",
                color="red",
                ms=9,
                label="SGLang alone fails (OutOfResources)",
            )
        ax.axhline(1.0, color="k", lw=0.7)
        ax.set_ylabel("speed-up (SGLang us / plugin us)")
        if key == "moe":
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size M (tokens)")
            ax.set_title(f"fused MoE {doc['model']['moe_layer']}", fontsize=9)
        else:
            ax.set_xticks(xs, [f"{r['kernel']}\n{r['workload']}" for r in rows], fontsize=6, rotation=20)
            ax.set_title("extend attention", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{doc['model']['name']} TP{doc['tp']} on {gpu['name']} ({gpu['smem_per_block_optin']:,} B/block)"
                 + ("" if doc["complete"] else " [partial]"), fontsize=10)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
