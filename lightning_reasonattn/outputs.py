"""Writing a command's outputs whole or not at all, and saying in one line why a write failed.

A disk that fills up, a folder that is read-only or is really a file, a Ctrl-C or a ``kill`` in the middle of a
write: each leaves the previous file whole (or no file), never half of one. Every output is written under a
temporary name in its own folder (the same filesystem) and renamed over its target when complete; a failed write
removes the temporary file and raises [`OutputError`][OutputError], one line that names the path and the cause.

- [`whole_file`][whole_file]: a context manager that yields the temporary path to write to;
  [`write_whole`][write_whole] writes text or bytes with it.
- [`whole_folder`][whole_folder]: the same for a folder of files (an exported adapter): written in a temporary
  sibling folder, then renamed into place (a new folder) or moved file by file into a previous one.
- [`failed_write`][failed_write]: the ``OSError`` or ``KeyboardInterrupt`` behind an exception that a writer
  wrapped (torch's checkpoint writer turns both into ``RuntimeError: ... unexpected pos``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputError(OSError):
    """An output could not be written; the message names the path and the cause, and says what is kept."""

    def __init__(self, path: str | Path, cause: BaseException, kept: str = "nothing was half-written"):
        reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        super().__init__(f"cannot write {str(path)!r} ({reason}): {kept}.")
        self.path, self.cause = str(path), cause
        self.errno = getattr(cause, "errno", None)


def failed_write(exc: BaseException) -> BaseException | None:
    """The ``KeyboardInterrupt`` or ``OSError`` that ``exc`` is, or that it was raised while handling (its
    ``__cause__`` / ``__context__`` chain); ``None`` when there is none."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, OSError)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _mode(full: int) -> int:
    """The mode a new file (``0o666``) or folder (``0o777``) gets under the current umask (``mkstemp`` and
    ``mkdtemp`` make theirs private)."""
    umask = os.umask(0)
    os.umask(umask)
    return full & ~umask


@contextlib.contextmanager
def whole_file(path: str | Path, kept: str = "the previous file, if any, is unchanged") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error, rename it over ``path``.

    Raises:
        OutputError: the folder cannot be made or written, or the write failed (a full disk...): the temporary file
            is removed and ``path`` is left as it was. A ``KeyboardInterrupt`` in the block also removes it.
    """
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.chmod(tmp, _mode(0o666))
        os.replace(tmp, target)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        cause = failed_write(err)
        if isinstance(cause, KeyboardInterrupt) and cause is not err:
            raise KeyboardInterrupt from None  # a writer had wrapped it (torch: "unexpected pos")
        if isinstance(cause, OSError) and not isinstance(err, OutputError):
            raise OutputError(target, cause, kept) from err
        raise


def write_whole(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through [`whole_file`][whole_file]."""
    with whole_file(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


@contextlib.contextmanager
def whole_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``path`` to write a set of files into; when the block ends without error,
    put them in place: a missing or empty ``path`` becomes that folder (one rename), an existing one receives each
    file by a rename over its namesake (other files in it are left alone).

    Raises:
        OutputError: the write failed (a full disk...): the temporary folder is removed, ``path`` is untouched.
    """
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        yield tmp
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if not target.exists():
            os.chmod(tmp, _mode(0o777))
            os.replace(tmp, target)
            tmp = None
            return
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                dest = target / item.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, dest)
    except BaseException as err:
        cause = failed_write(err)
        if isinstance(cause, OSError) and not isinstance(err, OutputError):
            kept = f"{target} is as it was" if target.exists() else "no folder was made"
            raise OutputError(target, cause, kept) from err
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
