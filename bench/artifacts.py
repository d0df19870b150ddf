"""Artifact throughput: ketch vs the minio client straight to the same S3 server.

Not a test. Run: ``python bench/artifacts.py [--size-mb 1024] [--repeat 3]``.

Starts an S3-compatible server the way the tests do (KETCH_TEST_S3_ENDPOINT, a MinIO
container, or moto's server as a subprocess), an in-process ketch server whose
artifacts live in that S3, and times, medians of ``--repeat``:

* upload: ``Client.log_artifact`` (hash pass + presigned parallel multipart PUTs +
  commit, which reads the object back to verify its sha256) vs ``Minio.fput_object``;
* download: ``Client.download_artifacts`` (presigned GET + sha256 check) vs
  ``Minio.fget_object``.

Each ketch upload changes the file's first bytes so content addressing cannot skip it.
Prints a table and writes bench/artifacts_results.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024


def make_file(path: pathlib.Path, size: int) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(16 * MiB, left)
            f.write(rng.integers(0, 2**63, size=(n + 7) // 8, dtype=np.uint64).tobytes()[:n])
            left -= n


def stamp(path: pathlib.Path) -> None:
    """Make the content unique (first 16 bytes) so it is not deduplicated."""
    with open(path, "r+b") as f:
        f.write(uuid.uuid4().bytes)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "artifacts_results.md")
    ns = parser.parse_args()

    import ketch
    from ketch_server.settings import Settings

    from tests._s3 import provision_s3
    from tests.conftest import ThreadServer

    s3, reason = provision_s3()
    if s3 is None:
        raise SystemExit(reason)
    size = ns.size_mb * MiB
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    direct_bucket = f"direct-{uuid.uuid4().hex[:8]}"
    minio = s3.client()
    minio.make_bucket(direct_bucket)
    rows: dict[str, list[float]] = {k: [] for k in ("k_up", "k_down", "d_up", "d_down")}
    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp:
        tmp_path = pathlib.Path(tmp)
        src = tmp_path / "payload.bin"
        make_file(src, size)
        settings = Settings(
            port=0,
            data_dir=tmp_path / "data",
            db_url=f"sqlite+aiosqlite:///{tmp_path / 'ketch.db'}",
            grace_seconds=1,
            **s3.settings(bucket),
        )
        server = ThreadServer(settings).start()
        try:
            client = ketch.Client(server.uri, timeout=600)
            exp = client.get_or_create_experiment("bench")
            from ketch.api.v1 import tracking_pb2

            run = client._transport.call(
                "CreateRun", tracking_pb2.CreateRunRequest(experiment=f"experiments/{exp.id}")
            )
            run_id = run.name.rpartition("/")[2]
            for i in range(ns.repeat):
                stamp(src)
                name = f"payload-{i}.bin"
                rows["d_up"].append(
                    timed(lambda n=name: minio.fput_object(direct_bucket, n, str(src)))
                )
                dst = tmp_path / "direct.bin"
                rows["d_down"].append(
                    timed(lambda n=name, d=dst: minio.fget_object(direct_bucket, n, str(d)))
                )
                dst.unlink()
                minio.remove_object(direct_bucket, name)
                stamp(src)
                rows["k_up"].append(timed(lambda d=f"it{i}": client.log_artifact(run_id, src, d)))
                out = tmp_path / "ketch-dl"
                rows["k_down"].append(
                    timed(
                        lambda d=f"it{i}/payload.bin", o=out: client.download_artifacts(
                            run_id, d, o
                        )
                    )
                )
                (out / "payload.bin").unlink()
                print(
                    f"iteration {i + 1}: "
                    + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()),
                    file=sys.stderr,
                )
            client.close()
        finally:
            server.stop()
            s3.stop()

    def mbps(key: str) -> float:
        return size / MiB / statistics.median(rows[key])

    table = [
        ("upload", mbps("k_up"), mbps("d_up")),
        ("download", mbps("k_down"), mbps("d_down")),
    ]
    lines = [
        f"# Artifact throughput: ketch vs direct minio client ({s3.kind} S3 server)",
        "",
        f"{ns.size_mb} MiB file, median of {ns.repeat}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; S3: {s3.kind} on 127.0.0.1.",
        "",
        "| operation | ketch MiB/s | direct MiB/s | ketch / direct |",
        "|---|---:|---:|---:|",
        *[f"| {op} | {k:.0f} | {d:.0f} | {100 * k / d:.0f}% |" for op, k, d in table],
        "",
        "Raw seconds: " + "; ".join(f"{k}={[round(x, 2) for x in v]}" for k, v in rows.items()),
        "",
        "ketch upload = sha256 pass over the file + BeginUpload + presigned multipart PUTs "
        "(64 MiB parts, up to 8 in parallel) + CommitUpload (server completes the multipart "
        "upload, then streams the object back once to verify the sha256). ketch download = "
        "DownloadArtifact + presigned GET + sha256 check + rename. Direct = Minio.fput_object "
        "(its default multipart, 3 parallel parts) / Minio.fget_object.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    ns.out.write_text(text)


if __name__ == "__main__":
    main()
