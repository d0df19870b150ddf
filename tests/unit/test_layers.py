"""Layering rules from STYLE.md, checked on the source: domain imports no grpc,
protobuf or SQLAlchemy; generated *_pb2 types stay in api/ and the SDK transport."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = ROOT / "server" / "ketch_server"


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_domain_is_pure():
    for path in (SERVER / "domain").glob("*.py"):
        bad = {n for n in _imports(path) if n.split(".")[0] in ("grpc", "google", "sqlalchemy")}
        assert not bad, f"{path.name} imports {bad}"


def test_generated_types_only_at_the_edges():
    allowed = {"api", "app.py", "healthcheck.py"}  # healthcheck.py: a grpc.health.v1 client
    for path in SERVER.rglob("*.py"):
        rel = path.relative_to(SERVER)
        if rel.parts[0] in allowed:
            continue
        bad = {n for n in _imports(path) if "_pb2" in n}
        assert not bad, f"{rel} imports generated types {bad}"


def test_store_raises_no_grpc():
    for path in (SERVER / "store").rglob("*.py"):
        assert not {n for n in _imports(path) if n.startswith("grpc")}, path


# The SDK's wire side: the transport, the clients of each service, streaming,
# spooling and syncing. The run handle, records, CLI and integrations stay free
# of generated types.
SDK_WIRE = {
    "_transport.py",
    "_client.py",
    "_artifacts.py",
    "_lineage.py",
    "_registry.py",
    "_stream.py",
    "_sinks.py",
    "_sync.py",
    "_wire.py",
    "_operations.py",
    "_admin.py",
    "errors.py",
}


def test_sdk_generated_types_only_on_the_wire_side():
    sdk = ROOT / "client" / "ketch"
    for path in sdk.glob("*.py"):
        if path.name in SDK_WIRE:
            continue
        bad = {n for n in _imports(path) if "_pb2" in n}
        assert not bad, f"client/ketch/{path.name} imports generated types {bad}"
