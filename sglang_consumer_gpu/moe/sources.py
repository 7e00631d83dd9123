"""Where fused-MoE config files can come from, in lookup order.

File names are SGLang's (``get_config_file_name``), built from the GPU spec
rather than the live device, so files move both ways between SGLang, vLLM's
tuning output and the plugin:

    E={E},N={N},device_name={name}[,dtype=..][,block_shape=[bn, bk]][,per_channel_quant=True][_down].json

1. ``user``: the plugin's user directory (``SGLANG_CONSUMER_GPU_MOE_CONFIG_DIR``,
   default ``~/.cache/sglang-consumer-gpu/moe_configs``), flat or with
   ``triton_X_Y_Z/`` sub-directories as SGLang's tuning script writes them;
2. ``sglang-env``: ``$SGLANG_MOE_CONFIG_DIR/configs/triton_X_Y_Z/`` when the
   user set SGLang's own variable (they tuned those files, so they outrank the
   bundled ones);
3. ``bundled``: files shipped in ``sglang_consumer_gpu/moe/configs/``;
4. ``sglang``: SGLang's own ``configs/triton_X_Y_Z/`` next to the module
   that reads them (``moe_runner/triton_utils/`` since 0.5.11,
   ``fused_moe_triton/`` in 0.4.9-0.5.10).

Within a layout with Triton-version directories the installed version's
directory comes first, then the others newest-first (as SGLang does).
Nothing here raises for a directory that cannot be listed: it is skipped with
one WARNING per directory and process (the lookup runs inside SGLang's calls).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.versions import installed_version, sglang_package_dirs

logger = logging.getLogger("sglang_consumer_gpu.moe")

BUNDLED_DIR = Path(__file__).resolve().parent / "configs"
#: SGLang's config directories inside the ``sglang`` package, newest layout first.
SGLANG_CONFIG_DIRS = (
    "srt/layers/moe/moe_runner/triton_utils/configs",
    "srt/layers/moe/fused_moe_triton/configs",
)
_unlistable: set[str] = set()


@dataclass(frozen=True)
class ConfigKey:
    """What SGLang asks ``get_moe_configs`` for."""

    E: int
    N: int
    dtype: str | None
    block_n: int = 0
    block_k: int = 0
    per_channel_quant: bool = False
    down_moe: bool = False

    @property
    def block_shape(self) -> tuple[int, int] | None:
        return (self.block_n, self.block_k) if self.block_n and self.block_k else None


def config_file_name(key: ConfigKey, device_name: str) -> str:
    """SGLang's file name for ``key`` on a device called ``device_name``."""
    dev = device_name.replace(" ", "_")
    dtype = f",dtype={key.dtype}" if key.dtype else ""
    block = f",block_shape=[{key.block_n}, {key.block_k}]" if key.block_shape else ""
    pcq = ",per_channel_quant=True" if key.per_channel_quant else ""
    down = "_down" if key.down_moe else ""
    return f"E={key.E},N={key.N},device_name={dev}{dtype}{block}{pcq}{down}.json"


def triton_dir_name(version: str | None = None) -> str:
    version = version or installed_version("triton") or "0.0.0"
    return "triton_" + version.split("+")[0].replace(".", "_")


def _version_key(dirname: str) -> tuple[int, ...]:
    parts = dirname.removeprefix("triton_").split("_")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def versioned_candidates(root: Path, name: str) -> Iterator[Path]:
    """``root/triton_<installed>/name``, then other ``triton_*`` dirs newest-first."""
    mine = triton_dir_name()
    yield root / mine / name
    try:
        others = sorted(
            (
                d.name
                for d in root.iterdir()
                if d.name.startswith("triton_") and d.name != mine and _is_dir(d)
            ),
            key=_version_key,
            reverse=True,
        )
    except FileNotFoundError:
        return
    except OSError as exc:
        dir_unreadable(root, exc)
        return
    for d in others:
        yield root / d / name


def _readable_dir(directory: Path) -> bool:
    try:
        os.stat(directory)
        return os.path.isdir(directory) and os.access(directory, os.R_OK | os.X_OK)
    except OSError:
        return False


def dir_unreadable(directory: Path, exc: OSError) -> bool:
    """True (after one WARNING per directory and process) when ``directory``
    cannot be listed or searched, which is then what ``exc`` is about. The
    warning names the outermost such directory (``user/`` rather than
    ``user/triton_3_8_0/`` when ``user/`` is the one that is unreadable)."""
    if _readable_dir(directory):
        return False
    while directory.parent != directory and not _readable_dir(directory.parent):
        directory = directory.parent
    if str(directory) not in _unlistable:
        _unlistable.add(str(directory))
        logger.warning(
            "sglang-consumer-gpu: cannot read MoE config directory %s (%s); configs in it are skipped",
            directory,
            exc.strerror or exc,
        )
    return True


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def sglang_config_root() -> Path | None:
    """SGLang's own ``configs`` directory, found without importing SGLang."""
    for base in sglang_package_dirs():
        for rel in SGLANG_CONFIG_DIRS:
            root = base / rel
            if _is_dir(root):
                return root
    return None


#: The sources in lookup order (the module docstring says what each is).
SOURCES = ("user", "sglang-env", "bundled", "sglang")


def roots() -> list[tuple[str, Path, bool, bool]]:
    """(source, directory, has ``triton_X_Y_Z/`` sub-directories, has files of its own) for
    every source there is, in lookup order."""
    out = [("user", settings.user_moe_config_dir(), True, True)]
    env_dir = os.environ.get("SGLANG_MOE_CONFIG_DIR")
    if env_dir:
        out.append(("sglang-env", Path(env_dir) / "configs", True, False))
    out.append(("bundled", BUNDLED_DIR, False, True))
    root = sglang_config_root()
    if root is not None:
        out.append(("sglang", root, True, False))
    return out


def directories(sources: tuple[str, ...] = SOURCES) -> list[Path]:
    """Every directory of ``sources`` the lookup reads files from, in lookup order (the
    ``triton_*`` sub-directories by name)."""
    out: list[Path] = []
    for source, root, versioned, flat in roots():
        if source not in sources:
            continue
        if flat:
            out.append(root)
        if versioned:
            try:
                out += sorted(p for p in root.iterdir() if p.name.startswith("triton_") and _is_dir(p))
            except OSError:
                continue
    return out


def candidates(key: ConfigKey, device_name: str) -> Iterator[tuple[str, Path]]:
    """Every (source, path) to try for ``key``, in lookup order (files may not exist)."""
    name = config_file_name(key, device_name)
    for source, root, versioned, flat in roots():
        if versioned:
            yield from ((source, p) for p in versioned_candidates(root, name))
        if flat:
            yield source, root / name


@dataclass(frozen=True)
class Variant:
    """Another file name whose tiles are valid for a key's kernel, and why."""

    key: ConfigKey
    because: str


#: Why each variant can share a tile (SGLang 0.5.23 ``kernels/ops/moe/fused_moe_triton_kernels.py``;
#: docs/moe.md, "File names SGLang asks for"). Shared memory is identical across them (oracle,
#: four tiles, sm_89 and sm_120): the operands are one byte in every variant.
INT8_CHANNEL = (
    "int8 without block quantization is always per-channel in SGLang's kernel (invoke_fused_moe_kernel "
    "asserts it); files tuned before SGLang added ',per_channel_quant=True' to the name lack it"
)
FP8_SCALES = (
    "per-tensor and per-channel fp8 run the same K loop; they differ only in the scales loaded "
    "before it and in the activation quantizer"
)
FP8_FROM_BLOCK = (
    "a block-quantized file's tiles have BLOCK_SIZE_K dividing the block, and the per-tensor loop "
    "is the block loop without its per-step scale loads; tuned for the block loop, speed unverified"
)
FP8_TO_BLOCK = (
    "validated for the block's scale layout (BLOCK_SIZE_K divides the block); tuned for the "
    "per-tensor loop, speed unverified"
)
#: The block shape SGLang's block-FP8 models use (DeepSeek-V3/R1, Qwen3-FP8): the one borrowed from.
FP8_BLOCK = (128, 128)


def name_variants(key: ConfigKey) -> list[Variant]:
    """Other names to try, in order, when no source has ``key``'s own file: the variants whose
    tiles SGLang's fused-MoE kernel runs with the same operands (``_down`` and other Triton
    folders are already covered by the lookup and SGLang). fp8 and int8 never share: another MMA
    and files from other GPU generations."""
    if key.dtype == "int8_w8a8" and not key.block_shape:
        return [Variant(dataclasses.replace(key, per_channel_quant=not key.per_channel_quant), INT8_CHANNEL)]
    if key.dtype != "fp8_w8a8":
        return []
    if not key.block_shape:
        flipped = dataclasses.replace(key, per_channel_quant=not key.per_channel_quant)
        block = dataclasses.replace(key, per_channel_quant=False, block_n=FP8_BLOCK[0], block_k=FP8_BLOCK[1])
        return [Variant(flipped, FP8_SCALES), Variant(block, FP8_FROM_BLOCK)]
    tensor = dataclasses.replace(key, block_n=0, block_k=0)
    return [
        Variant(dataclasses.replace(tensor, per_channel_quant=False), FP8_TO_BLOCK),
        Variant(dataclasses.replace(tensor, per_channel_quant=True), FP8_TO_BLOCK),
    ]


def served_by(key: ConfigKey) -> list[ConfigKey]:
    """The keys SGLang may ask for that :func:`name_variants` answers with ``key``'s file."""
    flip = dataclasses.replace(key, per_channel_quant=not key.per_channel_quant)
    unblocked = dataclasses.replace(key, block_n=0, block_k=0)
    asked = [
        flip,
        dataclasses.replace(key, per_channel_quant=False, block_n=FP8_BLOCK[0], block_k=FP8_BLOCK[1]),
        dataclasses.replace(unblocked, per_channel_quant=False),
        dataclasses.replace(unblocked, per_channel_quant=True),
    ]
    return [a for a in dict.fromkeys(asked) if a != key and any(v.key == key for v in name_variants(a))]


def parse_file_name(name: str) -> tuple[ConfigKey, str] | None:
    """(key, device name with underscores) of a file named as SGLang names them, else None."""
    import re

    m = re.fullmatch(
        r"E=(\d+),N=(\d+),device_name=(.*?)(?:,dtype=(\w+))?(?:,block_shape=\[(\d+), ?(\d+)\])?"
        r"(,per_channel_quant=True)?(_down)?\.json",
        name,
    )
    if m is None:
        return None
    e, n, device, dtype, bn, bk, pcq, down = m.groups()
    key = ConfigKey(int(e), int(n), dtype, int(bn or 0), int(bk or 0), bool(pcq), bool(down))
    return key, device
