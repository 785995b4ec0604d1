"""Import every method module so that its registrations run. Add new method modules here."""

from __future__ import annotations

from . import baselines, default, study  # noqa: F401 - imported for their @register side effects
