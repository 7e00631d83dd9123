"""Make a random-weight Qwen3-MoE checkpoint at Qwen3-30B-A3B's layer widths (for the end-to-end run).

SGLang's ``Qwen3MoeForCausalLM`` with Qwen3-30B-A3B's per-layer shapes: hidden
2048, 128 experts of moe_intermediate_size 768, top-8 routing (normalised),
32 query / 4 KV heads of head_dim 128, q/k RMSNorm. So every fused-MoE and
attention kernel launch has the real model's shape (E=128, N=768, K=2048 for
the MoE GEMMs); only the depth and the vocabulary are smaller:

* 4 layers (the real model has 48): the kernels of one layer are those of
  every layer, so the plugin-vs-SGLang ratio per layer is the same; 4 layers
  keep making and loading the checkpoint to seconds (1.2 GiB of experts per
  layer), and keep the per-step costs outside the layers (embedding, LM head,
  sampling, scheduling) from dominating, as they would with 1 layer;
* vocabulary 32,768 (real: 151,936): the LM head is not what this run measures.

Weights are seeded normals scaled by 1/sqrt(fan_in) (RMSNorm weights 1), so
activations stay O(1) through the layers, routing is not uniform, and the LM
head (std 4/sqrt(hidden)) gives logits of std ~4: peaked next-token
distributions (top-1 logprob around -2, top-1/top-2 margins ~1 nat), which the
logprob comparison needs. A word-level tokenizer over the same vocabulary
(``t<id>``, made with the ``tokenizers`` library) lets SGLang's tokenizer
manager, the OpenAI-compatible endpoints and bench_serving run; requests can
still carry token ids.

``--fp8 block`` writes the checkpoint as Qwen/Qwen3-30B-A3B-FP8 is published: the attention
projections and every expert's gate/up/down projections as ``float8_e4m3fn`` with a float32
``weight_scale_inv`` per 128x128 block (weight = e4m3 value x scale), everything else bf16, and a
``quantization_config`` (``quant_method: fp8``, dynamic activations, ``weight_block_size``
[128, 128], the norms, routers and LM head in ``modules_to_not_convert``). Each block's scale is
the power of two at or above amax / 448, so every dequantized weight is exactly a bf16 value:
``--twin DIR`` writes that bf16 checkpoint too (no ``quantization_config``), the reference whose
logprobs the FP8 model's are compared with (scripts/device/fp8_moe_check.py).

Idempotent: an existing output with the same parameters (``make_model.json``)
is kept. Usage: ``PYTHONPATH=$PWD:$PYTHONPATH python scripts/e2e/make_model.py --out /tmp/qwen3moe-e2e``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def config_dict(args: argparse.Namespace) -> dict:
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": args.hidden,
        "intermediate_size": 6144,  # dense MLP width (unused: every layer is sparse)
        "moe_intermediate_size": args.moe_intermediate,
        "num_experts": args.experts,
        "num_experts_per_tok": args.topk,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.q_heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": args.head_dim,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "max_position_embeddings": 40960,
        "use_sliding_window": False,
        "sliding_window": None,
        "vocab_size": args.vocab,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "router_aux_loss_coef": 0.001,
        "output_router_logits": False,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "dtype": "bfloat16",
        "use_cache": True,
    }


def make_weights(args: argparse.Namespace, device: str) -> dict:
    import torch

    gen = torch.Generator(device=device).manual_seed(args.seed)
    H, V, E, N, D = args.hidden, args.vocab, args.experts, args.moe_intermediate, args.head_dim
    qdim, kvdim = args.q_heads * D, args.kv_heads * D

    def normal(*shape: int, std: float) -> torch.Tensor:
        t = torch.empty(shape, device=device, dtype=torch.float32).normal_(0.0, std, generator=gen)
        return t.to(torch.bfloat16).cpu()

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, dtype=torch.bfloat16)

    w = {"model.embed_tokens.weight": normal(V, H, std=1.0)}
    for i in range(args.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = ones(H)
        w[p + "post_attention_layernorm.weight"] = ones(H)
        w[p + "self_attn.q_proj.weight"] = normal(qdim, H, std=1 / math.sqrt(H))
        w[p + "self_attn.k_proj.weight"] = normal(kvdim, H, std=1 / math.sqrt(H))
        w[p + "self_attn.v_proj.weight"] = normal(kvdim, H, std=1 / math.sqrt(H))
        w[p + "self_attn.o_proj.weight"] = normal(H, qdim, std=1 / math.sqrt(qdim))
        w[p + "self_attn.q_norm.weight"] = ones(D)
        w[p + "self_attn.k_norm.weight"] = ones(D)
        w[p + "mlp.gate.weight"] = normal(E, H, std=1 / math.sqrt(H))
        for e in range(E):
            q = f"{p}mlp.experts.{e}."
            w[q + "gate_proj.weight"] = normal(N, H, std=1 / math.sqrt(H))
            w[q + "up_proj.weight"] = normal(N, H, std=1 / math.sqrt(H))
            w[q + "down_proj.weight"] = normal(H, N, std=1 / math.sqrt(N))
    w["model.norm.weight"] = ones(H)
    w["lm_head.weight"] = normal(V, H, std=4 / math.sqrt(H))
    return w


FP8_BLOCK = 128
E4M3_MAX = 448.0
#: Weights a block-FP8 Qwen3-MoE checkpoint stores as e4m3 (suffixes of their names).
FP8_WEIGHTS = tuple(f"self_attn.{p}_proj.weight" for p in "qkvo") + tuple(f"{p}_proj.weight" for p in ("gate", "up", "down"))


def is_fp8_weight(name: str) -> bool:
    return name.endswith(FP8_WEIGHTS[:4]) or (".mlp.experts." in name and name.endswith(FP8_WEIGHTS[4:]))


def to_fp8_block(w: Any) -> tuple[Any, Any, Any]:
    """(e4m3 codes, float32 scale per 128x128 block, the dequantized bf16 weight): scales are powers
    of two, so ``codes * scale`` is exact in bf16."""
    import torch

    n, k = w.shape
    b = FP8_BLOCK
    padded = torch.nn.functional.pad(w.float().abs(), (0, (-k) % b, 0, (-n) % b))
    amax = padded.reshape(padded.shape[0] // b, b, padded.shape[1] // b, b).amax(dim=(1, 3))
    scale = torch.exp2(torch.ceil(torch.log2(amax.clamp_min(1e-12) / E4M3_MAX)))
    full = scale.repeat_interleave(b, 0)[:n].repeat_interleave(b, 1)[:, :k]
    codes = (w.float() / full).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return codes, scale.float(), (codes.float() * full).to(torch.bfloat16)


def quantization_config(layers: int) -> dict:
    keep = ["lm_head"]
    for i in range(layers):
        keep += [f"model.layers.{i}.{m}" for m in ("input_layernorm", "mlp.gate", "post_attention_layernorm")]
    return {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
            "modules_to_not_convert": keep}  # fmt: skip


def fp8_checkpoints(weights: dict) -> tuple[dict, dict]:
    """(the block-FP8 checkpoint's tensors, its dequantized bf16 twin's)."""
    fp8, twin = {}, {}
    for name, w in weights.items():
        if is_fp8_weight(name):
            codes, scale, exact = to_fp8_block(w)
            fp8[name], fp8[name + "_scale_inv"], twin[name] = codes, scale, exact
        else:
            fp8[name] = twin[name] = w
    return fp8, twin


def write_tokenizer(out: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<unk>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    vocab.update({f"t{i}": i for i in range(len(specials), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "<unk>",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "model_max_length": 40960,
                "clean_up_tokenization_spaces": False,
            },
            indent=1,
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/qwen3moe-e2e"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--seed", type=int, default=20251201)
    # Qwen3-30B-A3B's widths; smaller values only for a quick CPU check of this script
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--experts", type=int, default=128)
    ap.add_argument("--moe-intermediate", type=int, default=768)
    ap.add_argument("--topk", type=int, default=8)
    ap.add_argument("--q-heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--device", default=None, help="where to draw the weights (default: cuda if available)")
    ap.add_argument("--fp8", choices=("none", "block"), default="none", help="block: a block-FP8 checkpoint (above)")
    ap.add_argument("--twin", type=Path, help="with --fp8: also write its dequantized bf16 twin here")
    args = ap.parse_args()
    if args.twin and args.fp8 == "none":
        ap.error("--twin needs --fp8 block")

    import torch
    from safetensors.torch import save_file

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("out", "device")}
    outs = [args.out, *([args.twin] if args.twin else [])]
    if all(
        (o / "make_model.json").is_file() and json.loads((o / "make_model.json").read_text()).get("params") == params
        for o in outs
    ):
        print(json.dumps({"out": [str(o) for o in outs], "reused": True}))
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    weights = make_weights(args, device)
    checkpoints = [(args.out, weights, config_dict(args))]
    if args.fp8 == "block":
        fp8, twin = fp8_checkpoints(weights)
        checkpoints = [(args.out, fp8, {**config_dict(args), "quantization_config": quantization_config(args.layers)})]
        if args.twin:
            checkpoints.append((args.twin, twin, config_dict(args)))
    report = []
    for out, tensors, config in checkpoints:
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        write_tokenizer(tmp, args.vocab)
        seconds = round(time.time() - t0, 1)
        (tmp / "make_model.json").write_text(
            json.dumps({"params": params, "bytes": nbytes, "device": device, "seconds": seconds}, indent=1)
        )
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        report.append({"out": str(out), "bytes": nbytes, "tensors": len(tensors)})
    print(json.dumps({"out": report, "reused": False, "device": device, "seconds": round(time.time() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
