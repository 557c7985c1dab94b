"""How the commands end when they are interrupted: Ctrl-C, ``kill``, a scheduler's SIGTERM, a closed pipe.

A command interrupted by a signal ends the way shells and schedulers read it: exit status ``128 + signum``
(130 after Ctrl-C / SIGINT, 143 after SIGTERM, 141 when the reader of its output went away, SIGPIPE), with one line
on stderr that says what was interrupted and what is kept, and no traceback.

- Ctrl-C raises Python's ``KeyboardInterrupt``; [`sigterm_raises`][sigterm_raises] makes SIGTERM raise
  [`Terminated`][Terminated] the same way while a command runs (outside a Lightning run, whose own handler stops the
  loop after the step in progress and raises Lightning's ``SIGTERMException``).
- [`exit_status`][exit_status] and [`signal_name`][signal_name] turn either into the status and the name.
- [`quiet_broken_pipe`][quiet_broken_pipe]: after ``reasonattn analyze ... | head -1`` closed the pipe, nothing more
  is printed (not even Python's flush error at exit).
- [`tolerant_streams`][tolerant_streams]: a terminal that cannot show a character (a Latin-1 locale and ``’``) gets
  ``\\u2019`` instead of a ``UnicodeEncodeError``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

SIGPIPE_STATUS = 128 + getattr(signal, "SIGPIPE", 13)
"""The exit status after the reader of the output went away (141), as a process killed by SIGPIPE gives."""


class Terminated(BaseException):
    """A termination signal (SIGTERM) received while a command ran; like ``KeyboardInterrupt``, not an ``Exception``,
    so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = int(signum)


def signal_name(exc: BaseException) -> str:
    """``"SIGINT (Ctrl-C)"`` for ``KeyboardInterrupt``, ``"SIGTERM"`` for [`Terminated`][Terminated] and for
    Lightning's ``SIGTERMException``."""
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT (Ctrl-C)"
    return signal.Signals(getattr(exc, "signum", signal.SIGTERM)).name


def exit_status(exc: BaseException) -> int:
    """``128 + signum``: 130 for ``KeyboardInterrupt``, 143 for SIGTERM (how shells report a signal's end)."""
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 128 + getattr(exc, "signum", signal.SIGTERM)


@contextlib.contextmanager
def sigterm_raises(unless: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """While the block runs, SIGTERM raises [`Terminated`][Terminated] in the main thread (as Ctrl-C raises
    ``KeyboardInterrupt``), so that the command can say what was kept and exit with 143; the previous handler is put
    back afterwards. Outside the main thread, nothing changes (Python allows handlers only there).

    Args:
        unless: while it returns true, the first SIGTERM does nothing here: a Lightning run's loop is under way,
            whose own handler (which calls this one too) stops the loop after the step in progress. A second
            SIGTERM raises at once (a process waiting forever, on another process say, still stops).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def raise_terminated(signum, frame):
        received.append(signum)
        if not unless() or len(received) > 1:
            raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def quiet_broken_pipe() -> int:
    """After a ``BrokenPipeError`` on stdout: point stdout at ``/dev/null`` (Python would report the failed flush at
    exit) and return [`SIGPIPE_STATUS`][SIGPIPE_STATUS]. What was printed before stays printed, as with any Unix tool
    whose reader stopped reading."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return SIGPIPE_STATUS


def tolerant_streams() -> None:
    """Let stdout and stderr write a character their encoding lacks as an escape (``\\u2019``) instead of raising
    ``UnicodeEncodeError`` (a terminal in a Latin-1 or ASCII locale showing a model's text)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")
