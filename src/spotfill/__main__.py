"""``python -m spotfill``."""

from .cli import main

raise SystemExit(main())
