"""math-verify in a child process, so that every comparison has a hard time limit.

math-verify (through sympy) can spend minutes on a ten-character answer: ``9^{{9}^{9}}`` asks for an integer of
370 million digits, computed in C, where no signal can interrupt it (math-verify's own ``signal.alarm``
timeout cannot either, and it only works in the main thread). So comparisons run in a separate Python process,
started on first use; a comparison that takes longer than its budget kills that process (the answer counts as
"not equal") and starts a fresh one at once (about a second of start-up, which the next comparison waits for if
it is not over yet; that wait is not counted in its budget). The training process never imports math-verify or
sympy.

This file is also the child's program: it imports nothing from this package, only the standard library and
``math_verify``. Protocol, one JSON line each way: ``[gold, answer]`` in, ``true`` / ``false`` out; the child
first writes ``"ready"`` (or ``{"error": ...}`` if math-verify cannot be imported).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading

STARTUP_TIMEOUT = 120.0
"""Seconds the child may take to import math-verify (sympy) before it counts as failed."""


class MathVerifyWorker:
    """A client for one child process that compares answers with math-verify; thread-safe.

    Example::

        worker = MathVerifyWorker()
        worker.equal("$\\\\sqrt{2}$", "$\\\\frac{2}{\\\\sqrt{2}}$", timeout=0.5)  # True
        worker.equal("$42$", "$9^{{9}^{9}}$", timeout=0.5)  # False, after 0.5 s: the child is killed
    """

    def __init__(self, startup_timeout: float = STARTUP_TIMEOUT):
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._ready = False  # pragma: no mutate (equal() calls _spawn, which sets it, first)
        self._lines: queue.Queue = queue.Queue()  # pragma: no mutate (equal() calls _spawn, which sets it, first)
        self._pid = os.getpid()  # pragma: no mutate (equal() calls _spawn, which sets it, first)
        atexit.register(self.close)

    def _spawn(self) -> None:
        """Start a child without waiting for it (it imports sympy meanwhile)."""
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # math-verify's log lines; never read, so never a full pipe
            encoding="ascii",  # text pipes (each write is flushed); JSON lines are ASCII (ensure_ascii)
        )
        self._pid, self._ready = os.getpid(), False
        self._lines = queue.Queue()
        threading.Thread(target=_read_lines, args=(self._proc.stdout, self._lines), daemon=True).start()

    def _wait_ready(self) -> None:
        try:
            first = self._lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            first = {"error": f"no answer within {self.startup_timeout:g} s"}
        if first != "ready":
            self._kill()
            why = first.get("error") if isinstance(first, dict) else "it exited"
            raise RuntimeError(
                f"the math-verify process did not start ({why}); check that `{sys.executable} -c 'import "
                "math_verify'` works (pip install 'lightning-reasonattn[math]')."
            )
        self._ready = True

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def equal(self, gold: str, answer: str, timeout: float | None) -> bool:
        """Whether math-verify finds ``answer`` equal to ``gold`` within ``timeout`` seconds (``None``: no limit).

        Both are texts as math-verify's ``parse`` reads them (LaTeX in ``$...$`` or ``\\boxed{}``, or plain).
        Returns ``False`` when it does not, when parsing fails, or when the time runs out: the child is then
        killed and a new one started at once, so that its start-up overlaps the caller's other work. The time
        to wait for a child to start is not counted in ``timeout``. Raises ``RuntimeError`` if no child starts.
        """
        with self._lock:
            if self._proc is None or self._proc.poll() is not None or self._pid != os.getpid():
                self._proc = None  # a dead child, or one that belongs to the process this one was forked from
                self._spawn()
            if not self._ready:
                self._wait_ready()
            self._proc.stdin.write(json.dumps([gold, answer]) + "\n")
            self._proc.stdin.flush()
            try:
                return self._lines.get(timeout=timeout) is True
            except queue.Empty:
                self._kill()
                self._spawn()
                return False

    def close(self) -> None:
        """Stop the child (also done at exit)."""
        with self._lock:
            self._kill()


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(json.loads(line))
    lines.put(None)  # end of output: the child exited


def serve() -> None:
    """The child: answer ``[gold, answer]`` lines with ``true`` / ``false`` until stdin closes."""
    try:
        import logging

        import math_verify
    except Exception as err:  # report it to the parent rather than die silently
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}), flush=True)
        return
    logging.disable(logging.WARNING)  # "Timeout is disabled": the parent enforces the time limit
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        gold, answer = json.loads(line)
        try:
            parsed = math_verify.parse(gold, parsing_timeout=None), math_verify.parse(answer, parsing_timeout=None)
            ok = bool(math_verify.verify(*parsed, timeout_seconds=None))
        except Exception:
            ok = False
        print(json.dumps(ok), flush=True)


if __name__ == "__main__":
    serve()
