"""Import every method module so that its registrations run. Add new method modules here."""

from __future__ import annotations

import contextlib
import importlib

for _mod in ("baselines", "study", "default"):
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(f"{__package__}.{_mod}")
