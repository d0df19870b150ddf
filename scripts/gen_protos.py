"""Regenerate the Python stubs in client/ketch/api/v1 from protos/.

Usage: python scripts/gen_protos.py [--out DIR]

The stubs are committed; tests/unit/test_stubs_fresh.py regenerates them into a
temporary directory and fails when the committed ones differ. grpcio-tools is
pinned in pyproject.toml's `test` extra so the output is reproducible.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "client"


def proto_files() -> list[pathlib.Path]:
    return sorted((PROTO_ROOT / "ketch" / "api" / "v1").glob("*.proto"))


def generate(out: pathlib.Path) -> None:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto under `out`."""
    import grpc_tools
    from grpc_tools import protoc

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    ns = parser.parse_args()
    generate(ns.out)
    print(f"generated stubs for {len(proto_files())} proto files under {ns.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
