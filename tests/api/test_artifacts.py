"""Artifacts end to end through a real in-process server, on the local store and on a
real S3-compatible server over HTTP (moto, MinIO or KETCH_TEST_S3_ENDPOINT)."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import grpc
import ketch
import pytest
from ketch import errors
from ketch.api.v1 import artifacts_pb2, artifacts_pb2_grpc

MiB = 1024 * 1024
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def aclient(artifact_server):
    with ketch.Client(artifact_server.uri) as c:
        yield c


@pytest.fixture
def run_id(aclient):
    exp = aclient.get_or_create_experiment("artifacts")
    return _new_run(aclient, exp.id)


def _new_run(client, experiment_id: str) -> str:
    from ketch.api.v1 import tracking_pb2

    pb = client._transport.call(
        "CreateRun", tracking_pb2.CreateRunRequest(experiment=f"experiments/{experiment_id}")
    )
    return pb.run_id or pb.name.rpartition("/")[2]


@pytest.fixture
def stub(artifact_server):
    channel = grpc.insecure_channel(f"127.0.0.1:{artifact_server.app.port}")
    yield artifacts_pb2_grpc.ArtifactServiceStub(channel)
    channel.close()


def write_random(path: pathlib.Path, size: int, seed: int = 0) -> str:
    """Write ``size`` pseudo-random bytes in 8 MiB pieces; return their sha256."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(8 * MiB, left)
            block = rng.integers(0, 2**63, size=(n + 7) // 8, dtype=np.uint64).tobytes()[:n]
            h.update(block)
            f.write(block)
            left -= n
    return h.hexdigest()


def sha(path: pathlib.Path) -> str:
    return hashlib.file_digest(open(path, "rb"), "sha256").hexdigest()


def counts(server) -> dict[str, int]:
    from ketch_server.store.artifacts import ArtifactStore

    return server.run(ArtifactStore(server.app.store.engine).count())


def stored_objects(server) -> list[str]:
    """Every committed blob in the backend (local files or S3 objects)."""
    if server.kind == "local":
        root = server.settings.data_dir / "artifacts" / "sha256"
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
    from ketch_server.blobs.s3 import parse_s3_target

    from tests._s3 import S3Server  # noqa: F401

    bucket, prefix = parse_s3_target(server.settings.artifacts)
    from minio import Minio

    s = server.settings
    client = Minio(
        s.s3_endpoint, s.s3_access_key, s.s3_secret_key, region=s.s3_region, secure=s.s3_secure
    )
    return sorted(o.object_name for o in client.list_objects(bucket, prefix, recursive=True))


# --------------------------------------------------------------- round trips


def test_small_round_trip(aclient, run_id, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello artifacts\n")
    info = aclient.log_artifact(run_id, src, "texts")
    assert info.path == "texts/hello.txt"
    assert info.size == 16 and info.sha256 == sha(src)
    out = aclient.download_artifacts(run_id, "texts/hello.txt", tmp_path / "out")
    assert pathlib.Path(out).read_bytes() == b"hello artifacts\n"
    got = aclient.get_artifact(run_id, "texts/hello.txt")
    assert got.sha256 == info.sha256


def test_empty_file(aclient, run_id, tmp_path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    info = aclient.log_artifact(run_id, src)
    assert info.size == 0
    out = aclient.download_artifacts(run_id, "empty", tmp_path / "o")
    assert pathlib.Path(out).read_bytes() == b""


def test_large_multipart_round_trip(aclient, run_id, tmp_path, artifact_server):
    size = 200 * MiB + 12345  # 4 parts of 64 MiB on S3; ~200 chunks through the server
    src = tmp_path / "big.bin"
    digest = write_random(src, size, seed=7)
    seen = []
    info = aclient.log_artifact(run_id, src, progress=lambda d, t: seen.append((d, t)))
    assert (info.size, info.sha256) == (size, digest)
    assert seen and seen[-1] == (size, size)
    src.unlink()  # keep the disk light
    out = aclient.download_artifacts(run_id, "big.bin", tmp_path / "dl")
    assert os.path.getsize(out) == size
    assert sha(pathlib.Path(out)) == digest


def test_same_content_is_stored_once(aclient, run_id, tmp_path, artifact_server):
    src = tmp_path / "w.bin"
    write_random(src, 3 * MiB, seed=1)
    aclient.log_artifact(run_id, src, "a")
    other = _new_run(aclient, aclient.get_or_create_experiment("artifacts").id)
    resp_stub = artifacts_pb2_grpc.ArtifactServiceStub(aclient._transport.channel)
    begin = resp_stub.BeginUpload(
        artifacts_pb2.BeginUploadRequest(
            run=f"runs/{other}", path="b/w.bin", size=3 * MiB, sha256=sha(src)
        )
    )
    assert begin.already_stored and begin.artifact.path == "b/w.bin"
    aclient.log_artifact(other, src, "c")
    assert counts(artifact_server) == {"blobs": 1, "artifacts": 3, "uploads": 0}
    assert len(stored_objects(artifact_server)) == 1


def test_same_path_other_content_is_refused(aclient, run_id, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("one")
    aclient.log_artifact(run_id, src)
    aclient.log_artifact(run_id, src)  # same content again: fine
    src.write_text("two")
    with pytest.raises(errors.AlreadyExists) as err:
        aclient.log_artifact(run_id, src)
    assert err.value.field == "path"


# ------------------------------------------------------ interrupted uploads


def _begin(stub, run_id, path, data: bytes, **kw):
    return stub.BeginUpload(
        artifacts_pb2.BeginUploadRequest(
            run=f"runs/{run_id}",
            path=path,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            **kw,
        )
    )


def test_aborted_upload_leaves_nothing(stub, run_id, artifact_server):
    import urllib.request

    # Two parts on S3 (64 MiB + 1 MiB): the client sends the first, then dies.
    data = os.urandom(MiB) * 65
    before = (counts(artifact_server), stored_objects(artifact_server))
    plan = _begin(stub, run_id, "x/partial.bin", data).plan
    assert counts(artifact_server)["uploads"] == 1
    if plan.mode == artifacts_pb2.UPLOAD_MODE_STREAM:

        def half():
            yield artifacts_pb2.UploadChunksRequest(upload_id=plan.upload_id, data=data[:MiB])
            raise RuntimeError("client dies midway")

        with pytest.raises(grpc.RpcError):
            stub.UploadChunks(half())
    else:
        assert len(plan.parts) == 2
        first = plan.parts[0]
        body = data[first.offset : first.offset + first.size]
        req = urllib.request.Request(first.url, data=body, method="PUT", headers=OCTETS)
        urllib.request.urlopen(req, timeout=60).read()
    with pytest.raises(grpc.RpcError) as err:
        stub.CommitUpload(artifacts_pb2.CommitUploadRequest(upload_id=plan.upload_id))
    assert err.value.code() in (grpc.StatusCode.FAILED_PRECONDITION,)
    stub.AbortUpload(artifacts_pb2.AbortUploadRequest(upload_id=plan.upload_id))
    stub.AbortUpload(artifacts_pb2.AbortUploadRequest(upload_id=plan.upload_id))  # idempotent
    assert (counts(artifact_server), stored_objects(artifact_server)) == before
    with pytest.raises(grpc.RpcError) as err:
        stub.GetArtifact(
            artifacts_pb2.GetArtifactRequest(run=f"runs/{run_id}", path="x/partial.bin")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_lying_client_is_caught_on_commit(stub, run_id, artifact_server):
    import urllib.request

    data = os.urandom(MiB)
    before = (counts(artifact_server), stored_objects(artifact_server))
    resp = stub.BeginUpload(
        artifacts_pb2.BeginUploadRequest(
            run=f"runs/{run_id}", path="lie.bin", size=len(data), sha256="0" * 64
        )
    )
    plan = resp.plan
    if plan.mode == artifacts_pb2.UPLOAD_MODE_STREAM:
        with pytest.raises(grpc.RpcError) as err:
            stub.UploadChunks(
                iter([artifacts_pb2.UploadChunksRequest(upload_id=plan.upload_id, data=data)])
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stub.AbortUpload(artifacts_pb2.AbortUploadRequest(upload_id=plan.upload_id))
    else:
        req = urllib.request.Request(plan.parts[0].url, data=data, method="PUT", headers=OCTETS)
        urllib.request.urlopen(req, timeout=30).read()
        with pytest.raises(grpc.RpcError) as err:
            stub.CommitUpload(artifacts_pb2.CommitUploadRequest(upload_id=plan.upload_id))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "DIGEST_MISMATCH" in str(err.value.trailing_metadata())
    assert (counts(artifact_server), stored_objects(artifact_server)) == before


def test_begin_is_idempotent_by_request_id(stub, run_id, artifact_server):
    data = os.urandom(1000)
    a = _begin(stub, run_id, "r.bin", data, request_id="req-1").plan
    b = _begin(stub, run_id, "r.bin", data, request_id="req-1").plan
    assert a.upload_id == b.upload_id
    assert counts(artifact_server)["uploads"] == 1


# --------------------------------------------------------------- validation

TRAVERSAL = [
    "",
    "..",
    "../etc/passwd",
    "a/../../b",
    "a/./b",
    "./a",
    "/etc/passwd",
    "/",
    "~/x",
    "a\\..\\b",
    "..\\x",
    "a\x00b",
    "%2e%2e/x",
    "%2E%2E%2Fx",
    "a/%2e%2e/b",
    "%252e%252e/x",
    "a%2fb",
    "x#frag",
    "x?q=1",
    "a//b",
    "a/",
    "file:///etc/passwd",
    "file:x",
    "s3://bucket/key",
    "http://example.com/x",
    "C:\\Windows\\x",
    "C:x",
    "//proc/self/root",
    "//proc/self/root/etc/passwd",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "a\u202eb",
    "a\u200bb",
    "\uff0e\uff0e/x",
    "a\uff0f..\uff0fb",
    " a",
    "a ",
    "x" * 1025,
    "/".join(["y" * 256]),
]


def test_traversal_corpus_is_rejected_and_changes_nothing(stub, run_id, artifact_server):
    before = (counts(artifact_server), stored_objects(artifact_server))
    for bad in TRAVERSAL:
        with pytest.raises(grpc.RpcError) as err:
            _begin(stub, run_id, bad, b"data")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, repr(bad)
        from ketch.errors import from_rpc_error

        assert from_rpc_error(err.value).field == "path", repr(bad)
    assert (counts(artifact_server), stored_objects(artifact_server)) == before


def test_sdk_rejects_unsafe_artifact_path(aclient, run_id, tmp_path):
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(errors.InvalidArgument) as err:
        aclient.log_artifact(run_id, src, "../../outside")
    assert err.value.field == "path"


def test_good_paths_are_accepted(aclient, run_id, tmp_path):
    src = tmp_path / "f"
    src.write_text("x")
    for path in ("a b/c-d_e.f", "ünïcødé/模型", "v1.2/ckpt..bin", "...dots", "a%b"):
        aclient._artifacts.upload_file(run_id, src, path)
    paths = [a.path for a in aclient.iter_artifacts(run_id)]
    assert sorted(paths) == sorted(
        ["a b/c-d_e.f", "ünïcødé/模型", "v1.2/ckpt..bin", "...dots", "a%b"]
    )


# -------------------------------------------------------- listing, download


def test_list_pagination_and_prefixes(aclient, run_id, tmp_path, stub):
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    for i in range(7):
        (src / f"f{i}.txt").write_text(f"file {i}")
    (src / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "other.txt").write_text("other")
    aclient.log_artifacts(run_id, src, "data")
    aclient.log_artifact(run_id, tmp_path / "other.txt", "data_other")
    pages, token = [], ""
    while True:
        resp = stub.ListArtifacts(
            artifacts_pb2.ListArtifactsRequest(
                run=f"runs/{run_id}", path_prefix="data", page_size=3, page_token=token
            )
        )
        pages.append([a.path for a in resp.artifacts])
        token = resp.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 2]
    flat = [p for page in pages for p in page]
    assert flat == sorted(flat) and "data_other/other.txt" not in flat
    assert len(flat) == 8
    top = aclient.list_artifacts(run_id)
    assert {(f.path, f.is_dir) for f in top} == {("data", True), ("data_other", True)}
    inner = aclient.list_artifacts(run_id, "data")
    assert ("data/sub", True, None) in [(f.path, f.is_dir, f.file_size) for f in inner]
    assert ("data/f0.txt", False, 6) in [(f.path, f.is_dir, f.file_size) for f in inner]
    out = aclient.download_artifacts(run_id, "data", tmp_path / "dl")
    assert pathlib.Path(out, "sub", "deep.txt").read_text() == "deep"
    assert pathlib.Path(out, "f3.txt").read_text() == "file 3"
    with pytest.raises(grpc.RpcError) as err:
        stub.ListArtifacts(
            artifacts_pb2.ListArtifactsRequest(
                run=f"runs/{run_id}", path_prefix="other", page_token=resp.next_page_token or "x"
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_download_verifies_the_digest(aclient, run_id, tmp_path, artifact_server):
    src = tmp_path / "v.bin"
    src.write_bytes(os.urandom(300_000))
    info = aclient.log_artifact(run_id, src)
    _corrupt(artifact_server, info.sha256)
    dst = tmp_path / "dl"
    with pytest.raises(errors.KetchError) as err:
        aclient.download_artifacts(run_id, "v.bin", dst)
    assert err.value.reason == "DIGEST_MISMATCH"
    assert not (dst / "v.bin").exists()
    assert [p for p in dst.iterdir()] == []  # no temporary file left behind


def _corrupt(server, digest: str) -> None:
    """Flip a byte of the stored blob behind the server's back."""
    if server.kind == "local":
        path = server.settings.data_dir / "artifacts" / "sha256" / digest[:2] / digest[2:4] / digest
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    import io

    from ketch_server.blobs.s3 import parse_s3_target
    from minio import Minio

    s = server.settings
    bucket, _ = parse_s3_target(s.artifacts)
    client = Minio(
        s.s3_endpoint, s.s3_access_key, s.s3_secret_key, region=s.s3_region, secure=s.s3_secure
    )
    (obj,) = [o for o in client.list_objects(bucket, recursive=True) if digest in o.object_name]
    data = bytearray(client.get_object(bucket, obj.object_name).read())
    data[100] ^= 0xFF
    client.put_object(bucket, obj.object_name, io.BytesIO(bytes(data)), len(data))


def test_not_found(aclient, run_id):
    with pytest.raises(errors.NotFound):
        aclient.get_artifact(run_id, "nope.txt")
    with pytest.raises(errors.NotFound):
        aclient.get_artifact("0" * 32, "nope.txt")


# ------------------------------------------------------------------- models


def test_log_model_writes_a_manifest(artifact_server, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    (model / "signature.json").write_text(json.dumps({"inputs": [{"name": "x", "dtype": "f32"}]}))
    with ketch.init(experiment="models", uri=artifact_server.uri) as run:
        manifest_info = run.log_model(model, name="tiny", metadata={"note": "test"})
        run_id = run.id
    assert manifest_info.path == "models/tiny/MLmodel.json"
    with ketch.Client(artifact_server.uri) as c:
        out = c.download_artifacts(run_id, "models/tiny", tmp_path / "dl")
        manifest = json.loads(pathlib.Path(out, "MLmodel.json").read_text())
    assert manifest["name"] == "tiny"
    assert manifest["flavor"] == "transformers"
    assert manifest["signature"] == {"inputs": [{"name": "x", "dtype": "f32"}]}
    assert manifest["metadata"] == {"note": "test"}
    files = {f["path"]: f for f in manifest["files"]}
    assert set(files) == {"config.json", "model.safetensors", "signature.json"}
    assert files["model.safetensors"]["sha256"] == sha(model / "model.safetensors")
    assert (
        pathlib.Path(out, "model.safetensors").read_bytes()
        == (model / "model.safetensors").read_bytes()
    )
