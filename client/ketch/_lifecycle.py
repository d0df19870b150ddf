"""Process-level hooks for open runs: exit, SIGTERM/SIGINT, and fork.

* At interpreter exit, open runs are finished (FAILED after an uncaught
  exception, else FINISHED), each flush bounded by its finish timeout.
* On SIGTERM, open runs are finished as KILLED, then the handler installed
  before ketch's runs (Python's default terminates the process). On SIGINT the
  earlier handler runs (by default it raises KeyboardInterrupt, which the code
  may catch and carry on); runs still open at exit are then KILLED. Only
  installed from the main thread. A signal the process ignores (SIG_IGN, often
  inherited from the launcher) stays ignored: the process goes on,
  and so do its runs.
* In a forked child (DataLoader workers, multiprocessing), the parent's runs
  are forgotten: the child's logging to them is a counted no-op, and the child
  never finishes them nor touches the parent's stream.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
import weakref
from typing import Any

__all__ = ["track"]

log = logging.getLogger("ketch")

_open_runs: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False
_crashed: list[type] = []
_interrupted: list[int] = []
_previous_handlers: dict[int, Any] = {}


def track(run: Any) -> None:
    """Finish ``run`` at exit or on a terminating signal unless it is finished before.

    Signal handlers can only be set from the main thread: when the first run of a
    process starts elsewhere (an HPO worker thread), they are set by the first run
    the main thread tracks.
    """
    global _installed
    _open_runs.add(run)
    if not _installed:
        _installed = True
        previous_hook = sys.excepthook

        def excepthook(exc_type, exc, tb):
            _crashed.append(exc_type)
            previous_hook(exc_type, exc, tb)

        sys.excepthook = excepthook
        atexit.register(_at_exit)
        os.register_at_fork(after_in_child=_after_fork_in_child)
    if not _previous_handlers and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            _previous_handlers[sig] = previous
            if previous != signal.SIG_IGN:
                signal.signal(sig, _on_signal)


def _finish_all(state: str) -> None:
    for run in list(_open_runs):
        try:
            run.finish(state)
        except Exception as exc:
            log.error("ketch: could not finish run %s: %s", getattr(run, "id", "?"), exc)


def _at_exit() -> None:
    if _interrupted and _crashed:
        _finish_all("KILLED")
    else:
        _finish_all("FAILED" if _crashed else "FINISHED")


def _on_signal(signum: int, frame: Any) -> None:
    if signum == signal.SIGINT:
        _interrupted.append(signum)
    else:
        log.warning(
            "ketch: %s received; finishing open runs as KILLED", signal.Signals(signum).name
        )
        _finish_all("KILLED")
    previous = _previous_handlers.get(signum)
    if callable(previous):
        previous(signum, frame)
        return
    if signum == signal.SIGINT:
        return  # Python's SIGINT handler was replaced by another's
    # SIG_DFL, or a handler installed outside Python (None): end the process as the
    # default action does; if the re-raised signal does not end it, exit anyway.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(1)
    os._exit(128 + signum)


def _after_fork_in_child() -> None:
    for run in list(_open_runs):
        run._forked_away()
    _open_runs.clear()
