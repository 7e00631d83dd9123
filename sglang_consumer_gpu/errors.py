"""One mark on exceptions that cross the plugin's wrappers.

A patch's replacement that calls SGLang's or Triton's own code (the safety net
compiles through Triton) must let that code's errors reach the caller: a
kernel that does not compile is the caller's to see, not a reason for the
registry to fall back to the unpatched function. The mark travels on the
exception; it lives here, below both the registry and the safety net, so that
neither imports the other for it.
"""

from __future__ import annotations

import contextlib

#: Set on an exception that a replacement let through from the code it wraps.
NOT_OURS = "__sglang_consumer_gpu_not_ours__"


def not_ours(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised by the wrapped code: the registry re-raises it instead of falling back."""
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, NOT_OURS, True)
    return exc


def is_not_ours(exc: BaseException) -> bool:
    return bool(getattr(exc, NOT_OURS, False))
