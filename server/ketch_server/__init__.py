"""The ketch server: gRPC tracking and model-registry service.

Run it with ``ketch server`` or ``python -m ketch_server``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
