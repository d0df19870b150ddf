"""Generated protobuf and gRPC stubs for package ketch.api.v1 (do not edit).

Regenerate with ``python scripts/gen_protos.py``.
"""
