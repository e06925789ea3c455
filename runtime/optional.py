"""Optional vendors: each is an extra of the voicebus distribution, imported only when chosen."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional_import(module: str, extra: str) -> ModuleType:
    """Import an optional vendor module, or fail with the install command of the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed: pip install 'voicebus[{extra}]' ({exc})") from exc
