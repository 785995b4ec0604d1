"""Exceptions raised for problems a user can fix.

Every error that reaches a user names what is wrong and how to fix it. The command line turns
:class:`SpotfillError` (and the standard ``FileNotFoundError``) into a one-line message and exit
code 2, without a traceback.
"""

from __future__ import annotations

__all__ = ["InputError", "SpotfillError", "SpotfillWarning", "UnknownMethodError"]


class SpotfillError(ValueError):
    """Base class for errors caused by the user's input or options."""


class InputError(SpotfillError):
    """The data are unusable as given (missing coordinates, bad counts, duplicate names, ...)."""


class UnknownMethodError(SpotfillError, KeyError):
    """A method name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SpotfillWarning(UserWarning):
    """Something in the input that spotfill works around but the user should know about.

    Issued with :func:`warnings.warn`, so it shows by default (as anndata's and scikit-learn's data
    warnings do) and can be filtered: ``warnings.filterwarnings("ignore", category=SpotfillWarning)``.
    """


class Stopped(SystemExit):
    """The process was asked to stop (SIGTERM, SIGHUP) while a benchmark worker ran; the code is 128 + signal.

    A :class:`SystemExit`, so a script stops quietly; the command line prints one line for it.
    """

    code: int  # always raised with the exit status (SystemExit's code may also be a str or None)
