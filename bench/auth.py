"""What authentication costs per call: unary latency and metric-stream throughput with
``--auth none`` and ``--auth token`` (and TLS), side by side, on one machine.

Usage: python bench/auth.py [--calls 3000] [--points 500000] [--repeat 3]

Each configuration runs in a fresh in-process server on SQLite; the client is the SDK
in this process. Unary: sequential GetExperiment calls (p50/p99 in µs). Streaming:
``run.log`` of 5 keys until ``--points`` points are durably committed.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _server(tmp: pathlib.Path, mode: str, tls: bool):
    from ketch_server.settings import Settings

    from tests._certs import Pki
    from tests.conftest import ThreadServer

    extra: dict = {}
    if tls:
        pki = Pki(tmp / "pki")
        cert, key = pki.issue("localhost", server=True)
        extra = {"tls_cert": cert, "tls_key": key}
    settings = Settings(port=0, data_dir=tmp / "data", grace_seconds=1, auth=mode, **extra)
    return ThreadServer(settings).start(), (pki.ca_file if tls else None)


def _measure(mode: str, tls: bool, calls: int, points: int) -> dict[str, float]:
    import os

    import ketch
    from ketch_server.domain.identity import PrincipalKind, Role
    from ketch_server.store.identity import IdentityStore

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = pathlib.Path(tmp_dir)
        srv, ca = _server(tmp, mode, tls)
        try:
            store = IdentityStore(srv.app.store.engine)
            _, token = srv.run(
                store.create_token("bench", PrincipalKind.USER, Role.WRITER, "", 0, "bench")
            )
            if ca:
                os.environ["KETCH_TLS_CA"] = str(ca)
            uri = f"grpcs://localhost:{srv.app.port}" if tls else srv.uri
            api_token = token if mode == "token" else None
            client = ketch.Client(uri, api_token=api_token)
            exp = client.create_experiment("bench")
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                client.get_experiment(exp.id)
                lat.append(time.perf_counter_ns() - t0)
            if api_token:
                os.environ["KETCH_API_TOKEN"] = api_token
            run = ketch.init(
                "bench", uri=uri, system_metrics=False, capture_environment=False,
                spool_dir=tmp / "spool",
            )  # fmt: skip
            t0 = time.perf_counter()
            for step in range(points // 5):
                run.log({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": float(step)}, step=step)
            run.finish()
            elapsed = time.perf_counter() - t0
            lat.sort()
            return {
                "p50_us": lat[len(lat) // 2] / 1000,
                "p99_us": lat[int(len(lat) * 0.99)] / 1000,
                "points_per_s": points / elapsed,
            }
        finally:
            os.environ.pop("KETCH_API_TOKEN", None)
            os.environ.pop("KETCH_TLS_CA", None)
            srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    ns = parser.parse_args()
    configs = [("none", False), ("token", False), ("token", True)]
    results: dict[str, list[dict[str, float]]] = {}
    for rep in range(ns.repeat):
        for mode, tls in configs:
            name = f"{mode}{' + TLS' if tls else ''}"
            results.setdefault(name, []).append(_measure(mode, tls, ns.calls, ns.points))
            print(f"rep {rep + 1} {name}: {results[name][-1]}", file=sys.stderr)
    print(f"\nmedians of {ns.repeat}; {ns.calls} unary calls, {ns.points:,} streamed points")
    print("| auth | GetExperiment p50 | p99 | stream points/s |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"| {name} | {med['p50_us']:.0f} µs | {med['p99_us']:.0f} µs | "
            f"{med['points_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
