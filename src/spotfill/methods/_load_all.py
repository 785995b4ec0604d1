"""Import every method module so that its registrations run. Add new method modules here."""

from __future__ import annotations

import importlib

for _mod in ("baselines", "study", "default"):
    _name = f"{__package__}.{_mod}"
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as _err:  # a module not written yet is skipped; a broken import inside one is not
        if _err.name != _name:
            raise
