"""``config.json`` (a dict) -> :class:`~.description.ModelDescription`. Pure.

Covers the spellings of the families people run with SGLang on consumer GPUs:
Llama/Qwen/Mistral dense models, Mixtral (``num_local_experts``), Qwen2/3-MoE
(``num_experts``, ``moe_intermediate_size``, ``decoder_sparse_step``,
``mlp_only_layers``, ``shared_expert_intermediate_size``), DeepSeek-V2/V3/R1,
Kimi and GLM-4.5 (``n_routed_experts``, ``first_k_dense_replace``,
``moe_layer_freq``, ``n_shared_experts``, MLA ``kv_lora_rank``...), gpt-oss.
Multimodal wrappers are read through their ``text_config``.

Quantization: ``fp8`` (block or per-tensor), ``w8a8_fp8``, ``w8a8_int8``,
``blockwise_int8``, ``compressed-tensors`` (int8/fp8 W8A8, int4/int8
weight-only), ``awq``/``gptq`` (and their ``_marlin`` spellings), ``mxfp4``, ModelOpt FP8
(``quant_method: modelopt``, ``quant_algo: FP8``; the planner calls it ``modelopt_fp8`` as SGLang does).
Anything else raises :class:`QuantizationNotUnderstood` naming the field.
"""

from __future__ import annotations

from typing import Any

from sglang_consumer_gpu.models.description import Attention, ModelDescription, Moe, Quantization


class ModelConfigError(ValueError):
    """The config cannot be read as a model the planner covers."""


class QuantizationNotUnderstood(ModelConfigError):
    """A ``quantization_config`` field whose meaning the planner does not know."""

    def __init__(self, field: str, value: Any, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"quantization_config.{field} = {value!r}: {why}")


#: More layers than any model has by orders of magnitude: a config with more is not a model.
MAX_LAYERS = 100_000
_EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
_TOPK_KEYS = ("num_experts_per_tok", "moe_topk", "top_k", "experts_per_token")

#: quantization_config fields each method's reader interprets (the rest are reported as unread).
_KNOWN_FIELDS: dict[str, set[str]] = {
    "fp8": {"quant_method", "activation_scheme", "fmt", "weight_block_size", "ignored_layers",
            "modules_to_not_convert", "scale_fmt", "is_checkpoint_fp8_serialized"},
    "w8a8_fp8": {"quant_method", "is_dynamic", "ignore", "activation_scheme", "ignored_layers"},
    "w8a8_int8": {"quant_method", "is_dynamic", "ignore", "activation_scheme", "quant_description",
                  "packed_modules_mapping"},
    "blockwise_int8": {"quant_method", "activation_scheme", "weight_block_size", "ignored_layers"},
    "awq": {"quant_method", "bits", "w_bit", "group_size", "q_group_size", "zero_point", "version",
            "modules_to_not_convert"},
    "gptq": {"quant_method", "bits", "group_size", "desc_act", "sym", "damp_percent", "static_groups",
             "true_sequential", "lm_head", "model_name_or_path", "model_file_base_name", "checkpoint_format",
             "dynamic", "modules_in_block_to_quantize", "pack_dtype", "meta", "format"},
    "mxfp4": {"quant_method", "modules_to_not_convert"},
    "modelopt": {"quant_method", "quant_algo", "kv_cache_quant_algo", "kv_cache_scheme", "ignore",
                 "exclude_modules", "producer"},
    "compressed-tensors": {"quant_method", "config_groups", "format", "ignore", "kv_cache_scheme",
                           "quantization_status", "global_compression_ratio", "sparsity_config",
                           "version", "transform_config"},
}  # fmt: skip
_ALIASES = {"awq_marlin": "awq", "gptq_marlin": "gptq", "int8": "w8a8_int8", "modelopt_fp8": "modelopt"}


def _int(cfg: dict[str, Any], *keys: str, section: str = "") -> int | None:
    """The first of ``keys`` that holds a count (None: none does). Absent, null and 0 (how
    configs write "none") pass over to the next key; any other value that is not a positive
    integer is an error naming the field, never read as absent: ``num_experts: -128`` is not a
    dense model, and ``hidden_size: "2048"`` has a hidden size."""
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if v is None or (type(v) is int and v == 0):
            continue
        if type(v) is not int or v < 0:
            raise ModelConfigError(f"config.json: {section}{k} is {v!r}; expected a positive integer")
        return v
    return None


def _required(cfg: dict[str, Any], what: str, *keys: str) -> int:
    v = _int(cfg, *keys)
    if v is None:
        zero = next((k for k in keys if cfg.get(k) is not None), None)
        if zero is not None:
            raise ModelConfigError(f"config.json: {zero} is {cfg[zero]!r}; expected a positive integer")
        raise ModelConfigError(f"no {what} ({' / '.join(keys)}) in the model config")
    return v


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multimodal wrappers keep the language model under ``text_config``
    (the quantization config usually stays at the top level)."""
    text = cfg.get("text_config") or cfg.get("llm_config")
    if isinstance(text, dict):
        merged = {**cfg, **text}
        if "quantization_config" in cfg:
            merged["quantization_config"] = cfg["quantization_config"]
        return merged
    return cfg


def _attention(cfg: dict[str, Any], hidden: int) -> Attention:
    heads = _required(cfg, "attention head count", "num_attention_heads", "n_head", "num_heads")
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    window = window if type(window) is int and window > 0 else None  # configs write 0 or -1 for none
    if _int(cfg, "kv_lora_rank"):
        nope = _required(cfg, "qk_nope_head_dim", "qk_nope_head_dim")
        rope = _required(cfg, "qk_rope_head_dim", "qk_rope_head_dim")
        return Attention(
            kind="mla",
            q_heads=heads,
            kv_heads=_int(cfg, "num_key_value_heads") or heads,
            head_dim=nope + rope,
            v_head_dim=_required(cfg, "v_head_dim", "v_head_dim"),
            q_lora_rank=_int(cfg, "q_lora_rank"),
            kv_lora_rank=_int(cfg, "kv_lora_rank"),
            qk_nope_head_dim=nope,
            qk_rope_head_dim=rope,
            sliding_window=window,
        )
    head_dim = _int(cfg, "head_dim") or hidden // heads
    return Attention(
        kind="mha",
        q_heads=heads,
        kv_heads=_int(cfg, "num_key_value_heads", "num_kv_heads", "multi_query_group_num") or heads,
        head_dim=head_dim,
        v_head_dim=_int(cfg, "v_head_dim") or head_dim,
        sliding_window=window,
    )


def _moe(cfg: dict[str, Any], layers: int) -> tuple[Moe | None, tuple[int, ...]]:
    experts = _int(cfg, *_EXPERT_KEYS)
    if not experts:
        return None, ()
    topk = _required(cfg, "experts-per-token count", *_TOPK_KEYS)
    if topk > experts:
        raise ModelConfigError(f"config.json: {topk} experts per token, more than the {experts} experts")
    inter = _required(cfg, "MoE intermediate size", "moe_intermediate_size", "intermediate_size")
    n_shared = _int(cfg, "n_shared_experts", "num_shared_experts") or 0
    shared_inter = _int(cfg, "shared_expert_intermediate_size") or n_shared * inter
    if "first_k_dense_replace" in cfg or "moe_layer_freq" in cfg:  # DeepSeek / GLM / Kimi
        first = _int(cfg, "first_k_dense_replace") or 0
        freq = _int(cfg, "moe_layer_freq") or 1
        moe_layers = tuple(i for i in range(layers) if i >= first and i % freq == 0)
    else:  # Qwen2/3-MoE spell it as a step and an exception list; Mixtral/gpt-oss: every layer
        step = _int(cfg, "decoder_sparse_step") or 1
        dense = cfg.get("mlp_only_layers") or []
        if not isinstance(dense, list) or not all(type(i) is int and i >= 0 for i in dense):
            raise ModelConfigError(
                f"config.json: mlp_only_layers is {dense!r}; expected a list of layer indices"
            )
        dense = set(dense)
        moe_layers = tuple(i for i in range(layers) if i not in dense and (i + 1) % step == 0)
    return Moe(experts, topk, inter, shared_inter, n_shared), moe_layers


def _unquantized(q: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for key in ("ignored_layers", "modules_to_not_convert", "ignore", "exclude_modules"):
        v = q.get(key)
        if isinstance(v, list):
            out.extend(str(x) for x in v)
    return tuple(out)


def _block(q: dict[str, Any]) -> tuple[int, int] | None:
    block = q.get("weight_block_size")
    if block is None:
        return None
    if (
        not isinstance(block, list)
        or len(block) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)
    ):
        raise QuantizationNotUnderstood("weight_block_size", block, "expected two positive integers")
    return int(block[0]), int(block[1])


def _compressed_tensors(q: dict[str, Any]) -> Quantization:
    groups = q.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise QuantizationNotUnderstood(
            "config_groups", groups, "expected a non-empty mapping of scheme groups"
        )
    name, group = next(iter(groups.items()))
    if len(groups) > 1:
        raise QuantizationNotUnderstood(
            "config_groups", list(groups), "more than one scheme group (mixed precision) is not modelled"
        )
    w = (group or {}).get("weights") or {}
    acts = (group or {}).get("input_activations")
    bits, kind, strategy = w.get("num_bits"), w.get("type"), w.get("strategy")
    where = f"config_groups.{name}.weights"
    if bits not in (4, 8) or kind not in ("int", "float"):
        raise QuantizationNotUnderstood(
            f"{where}.num_bits/type", (bits, kind), "only 8-bit int/float and 4-bit int"
        )
    block = None
    if strategy == "block":
        bs = w.get("block_structure")
        if not (isinstance(bs, list) and len(bs) == 2):
            raise QuantizationNotUnderstood(f"{where}.block_structure", bs, "expected [block_n, block_k]")
        block = (int(bs[0]), int(bs[1]))
    elif strategy not in ("channel", "tensor", "group"):
        raise QuantizationNotUnderstood(
            f"{where}.strategy", strategy, "expected channel, tensor, group or block"
        )
    common = {
        "method": "compressed-tensors",
        "weight_bits": bits,
        "block": block,
        "per_channel": strategy == "channel",
        "group_size": w.get("group_size") if strategy == "group" else None,
        "unquantized": _unquantized(q),
        "source": "config.json",
    }
    if acts:  # W8A8
        dtype = "fp8_w8a8" if kind == "float" else "int8_w8a8"
        return Quantization(
            activations="dynamic" if acts.get("dynamic") else "static", moe_dtype=dtype, **common
        )
    dtype = {8: "int8_w8a16", 4: "int4_w4a16"}[bits] if kind == "int" else "other"
    return Quantization(activations=None, moe_dtype=dtype, **common)


def parse_quantization(q: dict[str, Any] | None, *, source: str = "config.json") -> Quantization:
    """Read a ``quantization_config`` dict (None or empty: unquantized)."""
    if not q:
        return Quantization()
    if not isinstance(q, dict):
        raise QuantizationNotUnderstood("", q, "expected a JSON object")
    raw = str(q.get("quant_method", "")).lower()
    method = _ALIASES.get(raw, raw)
    if method not in _KNOWN_FIELDS:
        raise QuantizationNotUnderstood(
            "quant_method", q.get("quant_method"), f"the planner knows {', '.join(sorted(_KNOWN_FIELDS))}"
        )
    unread = tuple(sorted(set(q) - _KNOWN_FIELDS[method]))
    unq = _unquantized(q)
    if method == "compressed-tensors":
        out = _compressed_tensors(q)
    elif method == "fp8":
        block = _block(q)
        act = str(q.get("activation_scheme", "dynamic"))
        if act not in ("dynamic", "static"):
            raise QuantizationNotUnderstood("activation_scheme", act, "expected dynamic or static")
        out = Quantization("fp8", 8, block, False, None, act, "fp8_w8a8", unq)
    elif method == "blockwise_int8":
        out = Quantization("blockwise_int8", 8, _block(q), False, None, "dynamic", "int8_w8a8", unq)
    elif method in ("w8a8_int8", "w8a8_fp8"):
        dtype = "int8_w8a8" if method == "w8a8_int8" else "fp8_w8a8"
        out = Quantization(method, 8, None, True, None, "dynamic", dtype, unq)
    elif method in ("awq", "gptq"):
        bits = _int(q, "bits", "w_bit", section="quantization_config.")
        if bits not in (4, 8):
            raise QuantizationNotUnderstood("bits", q.get("bits", q.get("w_bit")), "expected 4 or 8")
        group = q.get("group_size", q.get("q_group_size", 128))
        if not isinstance(group, int) or group == 0 or group < -1:
            raise QuantizationNotUnderstood("group_size", group, "expected a positive integer or -1")
        dtype = "int4_w4a16" if bits == 4 else "int8_w8a16"
        out = Quantization(method, bits, None, group == -1, None if group == -1 else group, None, dtype, unq)
    elif method == "modelopt":  # SGLang's modelopt_fp8 (ModelOptFp8Config): per-tensor weight and input scales
        algo = q.get("quant_algo", "FP8" if raw == "modelopt_fp8" else None)
        if algo != "FP8":
            raise QuantizationNotUnderstood("quant_algo", algo, "the planner knows ModelOpt FP8 only")
        out = Quantization("modelopt_fp8", 8, None, False, None, "static", "fp8_w8a8", unq)
    else:  # mxfp4: 4-bit experts with one 8-bit scale per 32 values; experts run outside fused_moe_kernel
        out = Quantization("mxfp4", 4 + 8 / 32, None, False, 32, None, "other", unq)
    from dataclasses import replace

    return replace(out, unread_fields=unread, source=source)


def quantization_from_flag(method: str) -> Quantization:
    """What ``--quantization METHOD`` means for a checkpoint whose config.json does not say
    (e.g. meituan/DeepSeek-R1-Channel-INT8, launched with ``--quantization w8a8_int8``)."""
    return parse_quantization({"quant_method": method}, source="--quantization")


def describe(cfg: dict[str, Any], *, name: str = "", config_path: str = "") -> ModelDescription:
    """The model ``cfg`` (a parsed config.json) describes."""
    if not isinstance(cfg, dict):
        raise ModelConfigError("the model config is not a JSON object")
    full = _text_config(cfg)
    layers = _required(full, "layer count", "num_hidden_layers", "n_layer", "num_layers")
    if layers > MAX_LAYERS:  # the planner walks the layers one by one
        raise ModelConfigError(f"config.json: {layers:,} layers; expected at most {MAX_LAYERS:,}")
    hidden = _required(full, "hidden size", "hidden_size", "n_embd", "d_model")
    vocab = _required(full, "vocabulary size", "vocab_size", "padded_vocab_size")
    moe, moe_layers = _moe(full, layers)
    archs = full.get("architectures") or []
    dense_inter = _int(full, "intermediate_size", "ffn_hidden_size", "n_inner") or 0
    notes = []
    if moe is not None and not dense_inter:
        dense_inter = moe.intermediate
    if moe is not None and moe.shared_experts and not _int(full, "shared_expert_intermediate_size"):
        notes.append(f"{moe.shared_experts} shared expert(s) of width {moe.intermediate}")
    return ModelDescription(
        name=name,
        architecture=str(archs[0]) if archs else "",
        model_type=str(full.get("model_type", "")),
        layers=layers,
        hidden=hidden,
        vocab=vocab,
        tie_word_embeddings=bool(full.get("tie_word_embeddings", False)),
        torch_dtype=str(full.get("torch_dtype") or full.get("dtype") or "bfloat16"),
        attention=_attention(full, hidden),
        dense_intermediate=dense_inter,
        moe=moe,
        moe_layers=moe_layers,
        quantization=parse_quantization(full.get("quantization_config")),
        max_position_embeddings=_int(full, "max_position_embeddings", "max_sequence_length", "seq_length"),
        nextn_layers=_int(full, "num_nextn_predict_layers") or 0,
        config_path=config_path,
        notes=tuple(notes),
    )
