"""One log line per reason per process, for replacements that decide on every call.

A patched SGLang function runs thousands of times; what it steers (a backend, a gate, a
kernel route) is said the first time each reason comes up, never per call, from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Any

_said: set[tuple[str, Hashable]] = set()
_lock = threading.Lock()


def log_once(logger: logging.Logger, key: Hashable, level: int, message: str, *args: Any) -> None:
    """``logger.log(level, message, *args)`` the first time ``key`` comes up for ``logger``."""
    with _lock:
        if (logger.name, key) in _said:
            return
        _said.add((logger.name, key))
    logger.log(level, message, *args)
