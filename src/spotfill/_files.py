"""Output files: atomic writes (temporary file + rename) and checks before anything is computed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ._errors import InputError

__all__ = ["atomic_path", "check_file_target", "check_output_file", "write_csv"]


def _file_mode(target: Path) -> int:
    """Permissions for ``target``: those of the file it replaces, else a new file's (``0o666`` less the umask)."""
    if target.exists():
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(target: Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it over ``target`` on success, delete it on failure.

    An interrupted write therefore never leaves a truncated ``target`` (nor the temporary file). The
    folder must exist. ``suffix`` ends the temporary name (some writers pick the format from it).
    """
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{suffix}")
    except OSError as err:  # named after the target, not the temporary file nobody asked for
        raise OSError(err.errno, f"cannot write here ({err.strerror})", str(target)) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _file_mode(target))
        try:
            os.replace(tmp, target)
        except OSError as err:
            raise OSError(err.errno, f"cannot replace the file ({err.strerror})", str(target)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv(df, target: str | os.PathLike[str]) -> None:
    """Write the DataFrame ``df`` to ``target`` without its index, atomically; the folder is created."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False)


def check_file_target(target: Path, *, endings: str, make_folder: bool = False) -> None:
    """Refuse a ``target`` that is a folder, or whose folder is missing (created with ``make_folder``) or not writable.

    ``endings`` names the accepted file endings in the message, e.g. ``".h5ad, .csv or .tsv"``.
    """
    if target.is_dir():
        msg = f"cannot write {target}: it is a folder; give a file name ending in {endings}."
        raise InputError(msg)
    blocker = next((p for p in (target.parent, *target.parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        msg = f"cannot write {target}: {blocker} is a file, not a folder; choose another output path."
        raise InputError(msg)
    if make_folder:
        target.parent.mkdir(parents=True, exist_ok=True)
    elif not target.parent.is_dir():
        msg = f"cannot write {target}: the folder {target.parent} does not exist; create it first."
        raise InputError(msg)
    if not os.access(target.parent, os.W_OK | os.X_OK):  # refused now, not after a long computation
        msg = f"cannot write {target}: no permission to create files in {target.parent}; choose another folder."
        raise InputError(msg)


def check_output_file(
    out: str | os.PathLike[str],
    *,
    suffixes: tuple[str, ...],
    inputs: Iterable[object] = (),
    what: str = "output",
    make_folder: bool = False,
    overwrite: bool = True,
) -> Path:
    """Refuse an output path that would destroy an input or hold the wrong format; return it as a Path.

    Parameters
    ----------
    out
        The file to be written.
    suffixes
        Allowed endings, lower case with the dot (e.g. ``(".csv",)``).
    inputs
        The files this run reads (other objects, e.g. AnnData or ``"synthetic:..."`` specs, are
        ignored): ``out`` may not be one of them.
    what
        What the file holds, for the messages (``"benchmark results"``).
    make_folder
        Create a missing folder instead of refusing it.
    overwrite
        Whether an existing file may be replaced (``False``: refused with a message naming
        ``--overwrite``, the flag of the commands that call this).
    """
    target = Path(out).expanduser()
    if not target.name.lower().endswith(suffixes):
        msg = f"cannot write the {what} to {target}: the file name must end in {' or '.join(suffixes)}."
        raise InputError(msg)
    resolved = target.resolve()
    for source in inputs:
        if isinstance(source, str | os.PathLike) and Path(source).expanduser().resolve() == resolved:
            msg = f"refusing to write the {what} to {target}: it is one of the input files; choose another name."
            raise InputError(msg)
    check_file_target(target, endings=" or ".join(suffixes), make_folder=make_folder)
    if not overwrite and target.is_file():
        msg = f"{target} already exists: pass overwrite=True (--overwrite) to replace it, or choose another name."
        raise InputError(msg)
    return target
