"""ketch._lifecycle: runs are finished at exit and on SIGTERM/SIGINT, whichever thread
started the first of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_signal_handlers_are_set_even_when_the_first_run_starts_off_the_main_thread(tmp_path):
    # Optuna with n_jobs>1 starts trial runs in worker threads, where Python refuses to
    # set signal handlers; the main thread's first run must still set them.
    code = textwrap.dedent(
        f"""
        import signal, threading
        import ketch
        # as Python sets them up itself, whatever the test runner's dispositions are
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from ketch import _lifecycle

        def worker():
            ketch.init("t", mode="offline", spool_dir={str(tmp_path)!r},
                       system_metrics=False, capture_environment=False, activate=False)

        t = threading.Thread(target=worker)
        t.start(); t.join()
        print(signal.getsignal(signal.SIGTERM) is _lifecycle._on_signal)
        ketch.init("t", mode="offline", spool_dir={str(tmp_path)!r},
                   system_metrics=False, capture_environment=False)
        print(signal.getsignal(signal.SIGTERM) is _lifecycle._on_signal)
        print(signal.getsignal(signal.SIGINT) is _lifecycle._on_signal)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "True", "True"], out.stderr
