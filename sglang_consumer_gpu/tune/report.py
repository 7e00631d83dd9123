"""The tuner's report: per batch size the chosen config, its time, and its gain over the
plugin's heuristic and over SGLang's default (all three from the same interleaved rounds)."""

from __future__ import annotations

import math
from typing import Any

from sglang_consumer_gpu.measure.common import geomean


def _gain(named: dict[str, Any] | None, us: float | None) -> float | None:
    other = (named or {}).get("us")
    return other / us if other and us else None


def rows(finished: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for M in sorted(finished):
        r = finished[M]
        heur, default = r.get("heuristic") or {}, r.get("default") or {}
        out.append({
            "M": M, "config": r.get("config"), "us": r.get("us"),
            "down": r.get("down"), "down_us": r.get("down_us"),
            "heuristic": heur.get("config"), "heuristic_us": heur.get("us"),
            "gain_vs_heuristic": _gain(heur, r.get("down_us") or r.get("us")),
            "default": default.get("config"), "default_us": default.get("us"),
            "default_why_not": default.get("why_not") if default.get("us") is None else None,
            "gain_vs_default": _gain(default, r.get("down_us") or r.get("us")),
        })  # fmt: skip
    return out


def summary(table: list[dict[str, Any]]) -> dict[str, Any]:
    hg = [r["gain_vs_heuristic"] for r in table if r["gain_vs_heuristic"]]
    dg = [r["gain_vs_default"] for r in table if r["gain_vs_default"]]
    return {
        "batch_sizes": len(table),
        "geomean_gain_vs_heuristic": geomean(hg),
        "geomean_gain_vs_default": geomean(dg),
        "down_configs": sum(1 for r in table if r["down"]),
    }


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def text(table: list[dict[str, Any]], title: str) -> str:
    lines = [
        title,
        f"{'M':>5}  {'chosen config':<22} {'us':>8}  {'vs heuristic':>12}  {'vs SGLang default':>17}",
    ]
    for r in table:
        cfg = r["config"] or "(none passed)"
        if r["down"]:
            cfg += f" + down {r['down']}"
        us = r["down_us"] or r["us"]
        dflt = _fmt(r["gain_vs_default"], ".3f")
        if r["default_why_not"]:
            dflt = "does not fit" if "fit" in r["default_why_not"] else "failed"
        lines.append(
            f"{r['M']:>5}  {cfg:<22} {_fmt(us, '8.1f')}  {_fmt(r['gain_vs_heuristic'], '12.3f')}  {dflt:>17}"
        )
    s = summary(table)
    lines.append(
        f"geomean: x{_fmt(s['geomean_gain_vs_heuristic'], '.3f')} over the heuristic, "
        f"x{_fmt(s['geomean_gain_vs_default'], '.3f')} over SGLang's default"
        + (f"; separate down config at {s['down_configs']} batch sizes" if s["down_configs"] else "")
    )
    return "\n".join(lines)
