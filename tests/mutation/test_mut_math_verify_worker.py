"""rewards/math_verify_worker.py: the client and the child's program, each run where a test sees them (issue 26).

The client (``MathVerifyWorker``) is tested against a stand-in child, a few lines of Python that speak the same
protocol (one JSON line each way, ``"ready"`` first) without math-verify: it starts in milliseconds and can hang,
exit or fail at start on demand. The child's program (``serve``) runs in this process with its stdin and stdout
replaced, so that a test sees what it writes, and when it flushes: the parent reads a pipe, on which an unflushed
line never arrives.
"""

import io
import json
import logging
import subprocess
import sys
import threading

import pytest

from lightning_reasonattn.rewards import math_verify_worker
from lightning_reasonattn.rewards.math_verify_worker import MathVerifyWorker, serve

STAND_IN = """\
import json, os, sys, time
mode = os.environ["STAND_IN_MODE"]
sys.stderr.write("log line of the child\\n")
sys.stderr.flush()
if mode == "exit":
    sys.exit(0)
if mode == "error":
    print(json.dumps({"error": "ImportError: no math_verify here"}), flush=True)
    sys.exit(0)
if mode == "slow":
    time.sleep(3)
print(json.dumps("ready"), flush=True)
for line in sys.stdin:
    gold, answer = json.loads(line)
    print(json.dumps(gold == answer), flush=True)
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """Makes MathVerifyWorker start the stand-in child; returns a function that sets its mode."""
    program = tmp_path / "stand_in_child.py"
    program.write_text(STAND_IN)
    monkeypatch.setattr(math_verify_worker, "__file__", str(program))  # the client runs its own file as the child

    def mode(name):
        monkeypatch.setenv("STAND_IN_MODE", name)

    mode("serve")
    return mode


def test_one_child_answers_every_comparison_in_turn(stand_in, capfd):
    """Guards: one child serves comparison after comparison (not one child per call, each left running); the
    thread that reads it is a daemon (else the interpreter waits for it at exit, before the atexit handler that
    stops the child: a training script that never ends); the child's log lines go nowhere."""
    before = set(threading.enumerate())
    worker = MathVerifyWorker(startup_timeout=30)
    try:
        assert worker.equal("$1$", "$1$", timeout=30) is True
        pid = worker._proc.pid
        assert worker.equal("$1$", "$2$", timeout=30) is False
        assert worker.equal("$3$", "$3$", timeout=30) is True
        assert worker._proc.pid == pid
        started = set(threading.enumerate()) - before
        assert started and all(thread.daemon for thread in started)
    finally:
        worker.close()
    assert worker._proc is None
    assert "log line of the child" not in capfd.readouterr().err


def test_a_dead_child_is_replaced(stand_in):
    """Guards the restart: a child that died between comparisons (killed, out of memory) is replaced, not written
    to (a broken pipe)."""
    worker = MathVerifyWorker(startup_timeout=30)
    try:
        assert worker.equal("a", "a", timeout=30) is True
        first = worker._proc
        first.kill()
        first.wait()
        assert worker.equal("b", "b", timeout=30) is True
        assert worker._proc.pid != first.pid
    finally:
        worker.close()


def test_a_failed_start_is_tried_again(stand_in, monkeypatch):
    """Guards: when the child cannot be started (an OSError from Popen), that error reaches the caller and the next
    comparison tries again; closing the worker after it raises nothing."""
    real = subprocess.Popen
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OSError("no more processes")
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", fails_once)
    worker = MathVerifyWorker(startup_timeout=30)
    try:
        with pytest.raises(OSError, match="no more processes"):
            worker.equal("a", "a", timeout=30)
        assert worker.equal("a", "a", timeout=30) is True
        assert len(calls) == 2
    finally:
        worker.close()
    worker.close()  # twice: nothing left to stop


@pytest.mark.parametrize(
    ("mode", "startup_timeout", "why"),
    [
        ("slow", 0.2, "no answer within 0.2 s"),  # ready only after 3 s: the start-up limit stops it
        ("exit", 60, "it exited"),  # no line at all
        ("error", 60, "ImportError: no math_verify here"),  # the child's own report
    ],
)
def test_a_child_that_does_not_start_is_named(stand_in, mode, startup_timeout, why):
    """Guards the start-up limit and its message: a child that is slow to start, exits, or cannot import
    math-verify raises one RuntimeError that says which, and is stopped."""
    stand_in(mode)
    worker = MathVerifyWorker(startup_timeout=startup_timeout)
    try:
        with pytest.raises(RuntimeError) as err:
            worker.equal("a", "a", timeout=30)
        assert f"the math-verify process did not start ({why}); check that" in str(err.value)
        assert worker._proc is None  # stopped
    finally:
        worker.close()


# ------------------------------------------------------------------------------------------ the child's program


class Pipe(io.StringIO):
    """stdout as the parent sees it through a pipe: only what was flushed arrives."""

    def __init__(self):
        super().__init__()
        self.arrived = ""

    def flush(self):
        self.arrived = self.getvalue()

    def lines(self):
        return [json.loads(line) for line in self.arrived.splitlines()]


def run_child(monkeypatch, pairs):
    """serve() in this process: the lines that arrived, and how many had arrived as each request was read (the
    parent writes a request only after it has the answer to the one before)."""
    pipe, seen = Pipe(), []

    def requests():
        for pair in pairs:
            seen.append(len(pipe.lines()))
            yield json.dumps(pair) + "\n"

    monkeypatch.setattr(sys, "stdin", requests())
    monkeypatch.setattr(sys, "stdout", pipe)
    try:
        serve()
    finally:
        logging.disable(logging.NOTSET)
    return pipe.lines(), seen


@pytest.fixture
def math_verify():
    return pytest.importorskip(
        "math_verify", reason="math-verify is not installed (pip install 'lightning-reasonattn[math]')"
    )


def test_the_child_flushes_each_line(monkeypatch, math_verify):
    """Guards the flushes: "ready" and each answer must reach the pipe before the next request is read (else the
    parent waits for it until its time limit and scores a right answer 0)."""
    answers, seen = run_child(monkeypatch, [["$2$", "$2$"], ["$2$", "$3$"], ["$\\frac{1}{2}$", "$0.5$"]])
    assert answers == ["ready", True, False, True]
    assert seen == [1, 2, 3]


def test_the_child_flushes_its_import_error(monkeypatch):
    """Guards the start-up report: without a flush it never reaches the parent, which then waits its whole
    start-up limit (120 s) for a child that has already given up."""
    monkeypatch.setitem(sys.modules, "math_verify", None)  # import math_verify raises
    answers, _ = run_child(monkeypatch, [["$1$", "$1$"]])
    assert answers == [{"error": "ModuleNotFoundError: import of math_verify halted; None in sys.modules"}]


def test_the_child_leaves_time_limits_to_the_parent(monkeypatch, math_verify):
    """Guards: math-verify's own time limits (5 s by default) are off in the child, so that the caller's ``timeout``
    decides alone (``timeout=None`` means no limit; a limit of 10 s is not cut to 5)."""
    calls = []
    parse, verify = math_verify.parse, math_verify.verify

    def spy(name, function):
        def call(*args, **kwargs):
            calls.append((name, kwargs))
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(math_verify, "parse", spy("parse", parse))
    monkeypatch.setattr(math_verify, "verify", spy("verify", verify))
    answers, _ = run_child(monkeypatch, [["$7$", "$7$"]])
    assert answers == ["ready", True]
    assert calls == [
        ("parse", {"parsing_timeout": None}),
        ("parse", {"parsing_timeout": None}),
        ("verify", {"timeout_seconds": None}),
    ]


def test_an_answer_that_crashes_math_verify_is_not_equal(monkeypatch, math_verify):
    """Guards a reward-hacking hole: an answer on which math-verify raises scores ``false`` (the protocol's word,
    not ``null``), never ``true``; the child goes on answering."""

    def raises_on_crash(gold, answer, **kwargs):
        if answer == ["crash"]:
            raise ValueError("math-verify failed")
        return gold == answer

    monkeypatch.setattr(math_verify, "verify", raises_on_crash)
    monkeypatch.setattr(math_verify, "parse", lambda text, **kwargs: [text])
    answers, _ = run_child(monkeypatch, [["$4$", "crash"], ["$4$", "$4$"]])
    assert answers == ["ready", False, True]
