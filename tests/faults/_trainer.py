"""A small "training process" for the fault tests, run as its own subprocess.

It logs ``--steps`` steps of two metrics with explicit steps (``loss`` = step / 2,
``acc`` = -step), paced in slices so that faults land while it streams, then calls
``run.finish()``. It reports on stdout, one line per event, flushed at once:

    run <run_id>
    progress <steps logged so far>     (after every slice)
    logged <steps>
    result <json>                      (after finish: what the SDK's stream saw)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import ketch


def say(*words: object) -> None:
    print(*words, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--slice", type=int, default=2_000)
    parser.add_argument("--pause", type=float, default=0.03)
    parser.add_argument("--flush-interval", type=float, default=0.05)
    args = parser.parse_args()

    run = ketch.init(
        experiment="faults",
        uri=args.uri,
        capture_environment=False,
        flush_interval=args.flush_interval,
    )
    say("run", run.id)
    for lo in range(0, args.steps, args.slice):
        hi = min(lo + args.slice, args.steps)
        for step in range(lo, hi):
            run.log({"loss": step * 0.5, "acc": -float(step)}, step=step)
        say("progress", hi)
        time.sleep(args.pause)
    say("logged", args.steps)
    run.finish()
    stream = _stream_of(run)
    spool_dir = getattr(run, "spool_dir", None)
    result = {
        "run_id": run.id,
        "dropped_points": run.dropped_points,
        "failure": None if run.failure is None else str(run.failure),
        # What the SDK's stream saw, where this SDK version exposes it (else None).
        "unacked_batches": getattr(stream, "pending", None),
        "reconnects": getattr(stream, "reconnects", None),
        "spool_left": None if spool_dir is None else str(spool_dir),
    }
    say("result", json.dumps(result))
    return 0


def _stream_of(run: ketch.Run) -> object:
    """The run's MetricStream (a private detail that differs across SDK versions)."""
    sink = getattr(run, "_sink", None)
    return getattr(sink, "stream", None) or getattr(run, "_stream", None)


if __name__ == "__main__":
    sys.exit(main())
