"""Find a model's ``config.json``: a local directory, a config file, or a Hugging
Face model id that is already in the local Hugging Face cache.

The cache is read through ``huggingface_hub.try_to_load_from_cache``, which
never touches the network: a model that is not cached is an error that says
how to fetch its config, not a download.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.models.config import ModelConfigError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelFiles:
    """Where a model reference led."""

    ref: str  # what the user typed
    config_path: Path
    model_dir: Path  # the directory holding config.json (a HF snapshot directory for cached ids)
    source: str  # "directory", "config file" or "Hugging Face cache"


def _hf_cache_lookup(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # huggingface_hub comes with SGLang (transformers); without it, no cache
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "~/.cache/huggingface/hub"


def resolve(ref: str) -> ModelFiles:
    """``ref`` -> its config.json; raises :class:`ModelConfigError` with what to do."""
    if not ref or not ref.strip():
        raise ModelConfigError("empty model reference: give a model directory, a config.json or a HF id")
    path = Path(ref).expanduser()
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise ModelConfigError(f"{ref}: directory has no config.json")
        return ModelFiles(ref, cfg, path, "directory")
    if path.is_file():
        return ModelFiles(ref, path, path.parent, "config file")
    if _REPO_ID.match(ref) and not ref.startswith((".", "/", "~")):
        found = _hf_cache_lookup(ref)
        if found is not None:
            return ModelFiles(ref, found, found.parent, "Hugging Face cache")
        raise ModelConfigError(
            f"{ref}: not in the local Hugging Face cache ({_hf_cache_dir()}); nothing is downloaded. "
            f"Fetch just its config with `huggingface-cli download {ref} config.json`, "
            "or give a local model directory or config.json"
        )
    raise ModelConfigError(
        f"{ref}: no such directory or file (give a model directory, a config.json or a HF id)"
    )


def read_config(files: ModelFiles) -> dict[str, Any]:
    try:
        cfg = json.loads(files.config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelConfigError(f"{files.config_path}: cannot read the model config: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelConfigError(f"{files.config_path}: not a JSON object")
    return cfg
