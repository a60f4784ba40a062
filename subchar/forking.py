"""Forked processes for the batch engine (``subchar.batch_engine``): how many, one function run meanwhile
(``Forked``), and how a child's outcome travels back through a pipe.

Forking is what lets the adapters' Python work run on every core instead of one under the GIL. It is used only on
Linux and before CUDA is initialised (macOS's system libraries are not fork-safe, Windows cannot fork, and a
forked child cannot use CUDA).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
from typing import Any, Callable

from eval.errors import UserError

MAX_PROCESSES = 8  # forked processes sharing the chunks, at most (one per usable core)
PROCESSES_VARIABLE = "SUBCHAR_PROCESSES"  # environment variable that sets the process count (1: no forking)


def process_count(processes: int | None, segments: int) -> int:
    """How many processes score the chunks: ``processes`` (default: ``$SUBCHAR_PROCESSES``, else the CPU cores this
    process may use, at most ``MAX_PROCESSES``), one where there is a single segment or where forking is unsafe: off
    Linux (macOS's system libraries are not fork-safe; Windows cannot fork) and once CUDA is initialised (a forked
    child cannot use it). Each process holds its own workers' branch states, so fewer processes use less memory."""
    if processes is None:
        processes = processes_from_environment()
    if not sys.platform.startswith("linux"):
        return 1
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return 1
    if processes is None:
        processes = min(len(os.sched_getaffinity(0)), MAX_PROCESSES)
    return max(1, min(processes, segments))


def processes_from_environment() -> int | None:
    """``$SUBCHAR_PROCESSES`` as a positive int (None when unset); a clear error for anything else."""
    given = os.environ.get(PROCESSES_VARIABLE, "").strip()
    if not given:
        return None
    if not given.isdigit() or int(given) < 1:
        raise UserError(f"{PROCESSES_VARIABLE}={given!r}: set it to a positive number of processes (1: no forking)")
    return int(given)


def send_outcome(send: Any, work: Callable[[], Any]) -> None:
    """In a forked process: send ``("done", work())`` through ``send``, or ``("error", the error)``."""
    try:
        send.send(("done", work()))
    except BaseException as error:  # every error goes back to the parent, which raises it
        try:
            send.send(("error", error))
        except OSError:  # the parent is gone (Ctrl-C reaches the whole process group): nobody to tell
            pass
        except Exception:  # an error that cannot be pickled
            send.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))
    finally:
        send.close()


def died(child: Any) -> RuntimeError:
    """The error for a forked process that ended without an answer (it is joined first, for its exit code)."""
    child.join()
    return RuntimeError(f"a batch-engine process died (exit code {child.exitcode}, e.g. out of memory); rerun with "
                        f"{PROCESSES_VARIABLE}=1, or --engine stream")


class Forked:
    """``function(*args)`` running in a forked process meanwhile; ``result()`` waits for its value (or raises its
    error), ``close()`` stops it if still running."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._child = context.Process(target=send_outcome, args=(send, lambda: function(*args)), daemon=True)
        self._child.start()
        send.close()

    def result(self) -> Any:
        try:
            kind, payload = self._receive.recv()
        except EOFError:
            raise died(self._child) from None
        if kind == "error":
            raise payload
        return payload

    def close(self) -> None:
        if self._child.is_alive():
            self._child.terminate()
        self._child.join()
        self._receive.close()


def run_forked(parts: list[range], work: Callable[[range, Callable[[int], None]], Any],
               progress: Callable[[int], None] | None, done: Callable[[range, Any], None]) -> None:
    """``work(part, tell)`` of each part in its own forked process; each sends what ``tell`` hears (progress) and
    then its outcome back through a pipe, handed here to ``progress`` and ``done(part, outcome)``. An error in one
    stops all and is raised here; so is a process that dies."""
    context = multiprocessing.get_context("fork")
    children = []
    try:
        for part in parts:
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=run_child, args=(work, part, send), daemon=True)
            child.start()
            send.close()
            children.append((child, receive, part))
        waiting = {receive: (child, part) for child, receive, part in children}
        while waiting:
            for receive in multiprocessing.connection.wait(list(waiting)):
                child, part = waiting[receive]
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    raise died(child) from None
                if kind == "progress":
                    if progress is not None:
                        progress(payload)
                    continue
                if kind == "error":
                    raise payload
                done(part, payload)
                del waiting[receive]
    finally:
        for child, receive, _ in children:
            if child.is_alive():
                child.terminate()
            child.join()
            receive.close()


def run_child(work: Callable[[range, Callable[[int], None]], Any], part: range, send: Any) -> None:
    """A forked process's work: ``work(part, tell)``, its progress and its outcome (or its error) sent back."""
    send_outcome(send, lambda: work(part, lambda scored: send.send(("progress", scored))))
