"""Run by ``sglang_consumer_gpu.pth`` at the start of every Python process.

It must cost next to nothing in processes that never import SGLang: it only
puts a finder on ``sys.meta_path`` that answers "not mine" to every import
except the first ``import sglang``. That import triggers
:func:`sglang_consumer_gpu.activation.activate`, which arms post-import hooks
for the modules the patches target; the normal import then continues.

When ``SGLANG_CONSUMER_GPU_EMULATE_GPU`` or ``SGLANG_CONSUMER_GPU_EMULATE_SMEM`` is
set (and only then) it also arms the emulation's hooks (:mod:`sglang_consumer_gpu.emulation`),
whatever the off switch says: unpatched SGLang on the emulated GPU is a test case.
"""

import os
import sys

# settings.OFF_VALUES, EMULATE_GPU and EMULATE_SMEM, repeated so interpreter start imports
# nothing more (tests keep them equal).
_OFF = ("0", "false", "no", "off")
_EMULATE_GPU = "SGLANG_CONSUMER_GPU_EMULATE_GPU"
_EMULATE_SMEM = "SGLANG_CONSUMER_GPU_EMULATE_SMEM"


class _SglangImportTrigger:
    """Meta-path finder that fires once, on the first import of ``sglang``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "sglang":
            return None
        _remove()
        try:
            from sglang_consumer_gpu.activation import activate

            activate(path="import-watcher")
        except (Exception, SystemExit) as exc:  # never break the user's import of sglang
            sys.stderr.write(f"sglang-consumer-gpu: activation failed, SGLang runs unpatched: {exc!r}\n")
        return None  # let the regular finders load sglang


_trigger = _SglangImportTrigger()


def _remove() -> None:
    # A plain loop, not contextlib.suppress: nothing more is imported at interpreter start.
    sys.meta_path[:] = [f for f in sys.meta_path if f is not _trigger]


def armed() -> bool:
    """True while the trigger waits for the first ``import sglang``."""
    return any(f is _trigger for f in sys.meta_path)


def _install_emulation() -> None:
    try:
        from sglang_consumer_gpu.emulation.hooks import install as install_emulation

        install_emulation()
    except Exception as exc:  # never break interpreter start
        sys.stderr.write(f"sglang-consumer-gpu: emulation not installed: {exc!r}\n")


def install() -> None:
    if os.environ.get(_EMULATE_GPU) or os.environ.get(_EMULATE_SMEM):
        _install_emulation()
    if os.environ.get("SGLANG_CONSUMER_GPU", "1").strip().lower() in _OFF:
        return
    if "sglang" in sys.modules:  # already imported (unusual for a .pth): activate now
        from sglang_consumer_gpu.activation import activate

        activate(path="import-watcher")
        return
    if not any(f is _trigger for f in sys.meta_path):
        sys.meta_path.insert(0, _trigger)


install()
