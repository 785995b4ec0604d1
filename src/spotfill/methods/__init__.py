"""User-facing imputation estimators, the registry, and the AnnData front end ``impute``."""

from ._base import BaseImputer, apply_mask
from ._impute import DEFAULT_METHOD, impute
from ._registry import get_method, list_methods, make_method, register

__all__ = [
    "DEFAULT_METHOD",
    "BaseImputer",
    "apply_mask",
    "get_method",
    "impute",
    "list_methods",
    "make_method",
    "register",
]
