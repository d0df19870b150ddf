"""Blob stores: where artifact bytes live (local directory or S3/MinIO).

See :mod:`ketch_server.blobs.base` for the contract; :func:`open_blob_store`
picks an implementation from the server settings.
"""

from ketch_server.blobs.base import BlobStore, open_blob_store
from ketch_server.blobs.local import LocalBlobStore

__all__ = ["BlobStore", "LocalBlobStore", "open_blob_store"]
