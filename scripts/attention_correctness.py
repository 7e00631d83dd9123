"""Device check: SGLang's real attention kernels under every tile the plugin can choose.

For RTX 3090 / RTX 4090 / L40S / RTX 5090 and each head-dim pair, the tile the
plugin derives from the budget (``extend_tile``) and SGLang's own sm_86/sm_89/
sm_120 branch tile are installed at SGLang's seam
(``_get_block_sizes_for_extend_attention``) and SGLang's ``extend_attention_fwd``
runs on random data (prefix + extend, causal; sliding window; logit cap;
custom mask) against a float32 torch reference, with the output poisoned with
NaN first. Context (prefill) attention runs through the plugin's real patch
(launch filter) with SGLang's sm_120 branch selected, so the rewritten launch
is what is tested.

Run on the device machine (needs scripts/device/ and .carry/sglang-0.5.23):
    python3 scripts/attention_correctness.py --out $OUT/attention_correctness.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GPUS = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA L40S", "NVIDIA GeForce RTX 5090")
VARIANTS = ("causal", "sliding_window", "logit_cap", "custom_mask")
#: "cpu" with TRITON_INTERPRET=1 runs the same checks through Triton's interpreter (slow; local debugging).
DEVICE = os.environ.get("ATTN_DEVICE", "cuda")


def _sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def reference_extend(
    q: Any,
    k_ext: Any,
    v_ext: Any,
    k_pre: list[Any],
    v_pre: list[Any],
    q_lens: list[int],
    variant: str,
    masks: list[Any],
    window: int,
    cap: float,
    scale: float,
) -> Any:
    """float32 attention per sequence: keys = prefix + extend, SGLang's masking semantics."""
    import torch

    outs, start = [], 0
    group = q.shape[1] // k_ext.shape[1]
    for b, n in enumerate(q_lens):
        qb = q[start : start + n].float()
        kb = torch.cat([k_pre[b], k_ext[start : start + n]]).float().repeat_interleave(group, dim=1)
        vb = torch.cat([v_pre[b], v_ext[start : start + n]]).float().repeat_interleave(group, dim=1)
        p = k_pre[b].shape[0]
        s = torch.einsum("qhd,khd->hqk", qb, kb) * scale
        if cap > 0:
            s = cap * torch.tanh(s / cap)
        qpos = torch.arange(n, device=q.device)[:, None] + p
        kpos = torch.arange(p + n, device=q.device)[None, :]
        if variant == "custom_mask":
            keep = masks[b].bool()
        else:
            keep = kpos <= qpos
            if variant == "sliding_window":
                keep &= qpos <= kpos + window
        s = s.masked_fill(~keep[None], float("-inf"))
        outs.append(torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1), vb))
        start += n
    return torch.cat(outs)


def run_extend(
    ea: Any, lq: int, lv: int, tile: tuple[int, int, int], variant: str, seed: int, dtype: str = "bfloat16"
) -> dict[str, Any]:
    import torch

    torch.manual_seed(seed)
    dev, dt = DEVICE, getattr(torch, dtype)
    mla = lq == 576
    hq, hk = (16, 1) if mla else (8, 2)
    q_lens, p_lens = [77, 150, 33], [200, 0, 95]
    total_q = sum(q_lens)
    q = torch.randn(total_q, hq, lq, device=dev, dtype=dt)
    k_ext = torch.randn(total_q, hk, lq, device=dev, dtype=dt)
    v_ext = torch.randn(total_q, hk, lv, device=dev, dtype=dt)
    slots = 4096
    k_buf = torch.randn(slots, hk, lq, device=dev, dtype=dt)
    v_buf = torch.randn(slots, hk, lv, device=dev, dtype=dt)
    perm = torch.randperm(slots, device=dev)[: sum(p_lens)].to(torch.int64)
    kv_indptr = torch.tensor([0, *torch.tensor(p_lens).cumsum(0).tolist()], device=dev, dtype=torch.int32)
    qo_indptr = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], device=dev, dtype=torch.int32)
    k_pre = [k_buf[perm[kv_indptr[b] : kv_indptr[b + 1]]] for b in range(len(q_lens))]
    v_pre = [v_buf[perm[kv_indptr[b] : kv_indptr[b + 1]]] for b in range(len(q_lens))]
    masks, custom, mask_indptr = [], None, None
    if variant == "custom_mask":
        for n, p in zip(q_lens, p_lens, strict=True):
            m = torch.rand(n, p + n, device=dev) > 0.5
            m[:, :p] = True  # SGLang skips the custom mask over the prefix by default
            m[torch.arange(n), p + torch.arange(n)] = True  # every row sees itself
            masks.append(m.to(torch.uint8))
        custom = torch.cat([m.flatten() for m in masks])
        sizes = [m.numel() for m in masks]
        mask_indptr = torch.tensor(
            [0, *torch.tensor(sizes).cumsum(0).tolist()], device=dev, dtype=torch.int64
        )
    o = torch.full((total_q, hq, lv), float("nan"), device=dev, dtype=dt)
    scale = 1.0 / math.sqrt(lq)
    window = 64 if variant == "sliding_window" else -1
    cap = 20.0 if variant == "logit_cap" else 0.0
    original = ea._get_block_sizes_for_extend_attention

    def fixed(a: int, b: int) -> Any:
        return original(a, b)[:3] + tile

    ea._get_block_sizes_for_extend_attention = fixed
    try:
        ea.extend_attention_fwd(
            q,
            k_ext,
            v_ext,
            o,
            k_buf,
            v_buf,
            qo_indptr,
            kv_indptr,
            perm,
            custom,
            variant != "custom_mask",
            mask_indptr,
            max(q_lens),
            1.0,
            1.0,
            sm_scale=scale,
            logit_cap=cap,
            sliding_window_size=window,
        )
        _sync()
    finally:
        ea._get_block_sizes_for_extend_attention = original
    ref = reference_extend(q, k_ext, v_ext, k_pre, v_pre, q_lens, variant, masks, window, cap, scale)
    err = (o.float() - ref).abs().max().item()
    return {
        "max_abs_err": err,
        "nan": bool(torch.isnan(o).any().item()),
        "ok": err < 2e-2 and not torch.isnan(o).any().item(),
    }


def run_prefill(pa: Any, d: int, dtype: str, causal: bool, spec: Any, seed: int) -> dict[str, Any]:
    import torch

    from sglang_consumer_gpu.hardware.current import override_spec
    from sglang_consumer_gpu.patches import attention_prefill

    torch.manual_seed(seed)
    dt = getattr(torch, dtype)
    lens = [300, 129, 64]
    total, h = sum(lens), 4
    q, k, v = (torch.randn(total, h, d, device=DEVICE, dtype=dt) for _ in range(3))
    o = torch.full_like(q, float("nan"))
    starts = torch.tensor([0, *torch.tensor(lens).cumsum(0)[:-1].tolist()], device=DEVICE, dtype=torch.int32)
    seq = torch.tensor(lens, device=DEVICE, dtype=torch.int32)
    patched = attention_prefill.PATCH.build(pa.context_attention_fwd, pa)
    before = attention_prefill.REWRITES[0]
    saved = pa.CUDA_CAPABILITY
    pa.CUDA_CAPABILITY = spec.capability  # SGLang picks its sm_120 branch (BLOCK=128)
    try:
        with override_spec(spec):
            patched(q, k, v, o, starts, seq, max(lens), is_causal=causal)
        _sync()
    finally:
        pa.CUDA_CAPABILITY = saved
    errs = []
    for s, n in zip(starts.tolist(), lens, strict=True):
        qb, kb, vb = (t[s : s + n].float() for t in (q, k, v))
        att = torch.einsum("qhd,khd->hqk", qb, kb) / math.sqrt(d)
        if causal:
            att = att.masked_fill(torch.ones(n, n, device=DEVICE).triu(1).bool()[None], float("-inf"))
        ref = torch.einsum("hqk,khd->qhd", torch.softmax(att, -1), vb)
        errs.append((o[s : s + n].float() - ref).abs().max().item())
    tol = 2e-2 if dtype != "float32" else 5e-3
    nan = bool(torch.isnan(o).any().item())
    return {
        "max_abs_err": max(errs),
        "nan": nan,
        "rewritten": attention_prefill.REWRITES[0] - before,
        "ok": max(errs) < tol and not nan,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="causal only, fewer head dims")
    args = ap.parse_args()
    import importlib.util

    if importlib.util.find_spec("sglang") is None:  # the device machine: SGLang from the carry
        import sglang_env  # noqa: F401
    import sglang.kernels.ops.attention.extend_attention as ea
    import sglang.kernels.ops.attention.prefill_attention as pa
    import torch

    from sglang_consumer_gpu.attention import HEAD_DIMS, PREFILL_HEAD_DIMS, extend_tile
    from sglang_consumer_gpu.hardware import find_gpu

    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for lq, lv in HEAD_DIMS:
        tiles: dict[tuple[int, int, int], list[str]] = {}
        for name in GPUS:
            spec = find_gpu(name)
            t = extend_tile(spec, lq, lv)
            tiles.setdefault((t.block_m, t.block_n, t.num_warps), []).append(f"plugin {spec.name}")
            saved = ea.CUDA_CAPABILITY
            ea.CUDA_CAPABILITY = spec.capability
            try:
                sg = ea._get_block_sizes_for_extend_attention(lq, lv)[3:]
            finally:
                ea.CUDA_CAPABILITY = saved
            tiles.setdefault(tuple(sg), []).append(f"sglang {spec.arch_name}")
        for tile, who in tiles.items():
            for i, variant in enumerate(VARIANTS[:1] if args.quick else VARIANTS):
                r = run_extend(ea, lq, lv, tile, variant, seed=lq + i)
                rows.append(
                    {
                        "kernel": "extend",
                        "lq": lq,
                        "lv": lv,
                        "tile": tile,
                        "variant": variant,
                        "chosen_by": sorted(set(who)),
                        **r,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    spec = find_gpu("RTX 5090")
    for d in PREFILL_HEAD_DIMS:
        for dtype, causal in (("bfloat16", False), ("bfloat16", True), ("float32", False)):
            if dtype == "float32" and d not in (128, 256):
                continue
            r = run_prefill(pa, d, dtype, causal, spec, seed=d)
            rows.append(
                {"kernel": "prefill", "lq": d, "dtype": dtype, "causal": causal, "spec": spec.name, **r}
            )
            print(json.dumps(rows[-1]), flush=True)
    out = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE,
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "seconds": round(time.time() - t0, 1),
        "passed": sum(r["ok"] for r in rows),
        "total": len(rows),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{out['passed']}/{out['total']} passed in {out['seconds']} s on {out['device']}")
    return 0 if out["passed"] == out["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
