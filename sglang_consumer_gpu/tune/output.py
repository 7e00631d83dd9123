"""SGLang's config files from a finished search: names, contents, where they go, atomically.

- **Where**: by default the plugin's user directory (``settings.user_moe_config_dir()``, the
  first place its lookup reads) in the installed Triton's ``triton_X_Y_Z`` sub-directory, so the
  next ``launch_server`` uses the file with no copying and the lookup knows which Triton it was
  tuned under; ``--output DIR`` writes into DIR itself.
- **What**: SGLang's format -- ``{"<batch size>": {BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K,
  GROUP_SIZE_M, num_warps, num_stages}}``. SGLang's loader does ``int(key)`` on every top-level
  key, so nothing else goes into the file: the Triton version, the GPUs and the report go into
  a sidecar (:func:`~sglang_consumer_gpu.moe.lookup.tuning_record_path`).
- **_down**: written only when a separate down-projection config won at some batch size
  (:mod:`.search`); it then holds an entry for every batch size (the up config where it did not
  win), since SGLang takes the nearest entry. A ``_down`` file left by an earlier run is
  removed when this run has none, or SGLang would pair it with the new up configs.
- **How**: every file through :func:`~.state.write_atomic`: a reader sees the old file or the
  whole new one, never half a JSON file.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.measure.moe import parse_config_key
from sglang_consumer_gpu.moe.lookup import tuning_record_path
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.sources import ConfigKey, config_file_name, triton_dir_name
from sglang_consumer_gpu.tune.state import write_atomic


def default_dir() -> Path:
    return settings.user_moe_config_dir() / triton_dir_name()


def config_paths(shape: MoeShape, device_name: str, out_dir: Path) -> tuple[Path, Path]:
    """(the config file, its ``_down`` twin) for ``shape`` on a GPU called ``device_name``."""
    bn, bk = shape.block_shape or (0, 0)
    key = ConfigKey(shape.E, shape.N, shape.dtype, bn, bk, shape.per_channel_quant)
    down = ConfigKey(shape.E, shape.N, shape.dtype, bn, bk, shape.per_channel_quant, down_moe=True)
    return out_dir / config_file_name(key, device_name), out_dir / config_file_name(down, device_name)


def entries(finished: dict[int, dict[str, Any]], down: bool = False) -> dict[str, dict[str, int]]:
    """The file's content: per batch size (ascending) the chosen (or down) config."""
    out: dict[str, dict[str, int]] = {}
    for M in sorted(finished):
        r = finished[M]
        key = (r.get("down") or r["config"]) if down else r["config"]
        if key:
            out[str(M)] = parse_config_key(key)
    return out


def dump(configs: dict[str, dict[str, int]]) -> str:
    return json.dumps(configs, indent=4) + "\n"


def write(
    paths: tuple[Path, Path], finished: dict[int, dict[str, Any]], record: dict[str, Any]
) -> list[Path]:
    """Write the config file, the ``_down`` file where one won, and the sidecar; return what
    was written."""
    main, down = paths
    written = [main]
    write_atomic(main, dump(entries(finished)))
    if any(r.get("down") for r in finished.values()):
        write_atomic(down, dump(entries(finished, down=True)))
        written.append(down)
    else:
        with contextlib.suppress(FileNotFoundError):
            down.unlink()
    record = {**record, "config_file": str(main), "down_file": str(down) if len(written) > 1 else None}
    write_atomic(tuning_record_path(main), json.dumps(record, indent=1, sort_keys=True) + "\n")
    return written
