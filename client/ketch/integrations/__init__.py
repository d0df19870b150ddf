"""Integrations with training and tuning frameworks.

Each lives in its own module and is imported on its own, so ``import ketch``
never pulls in a framework::

    from ketch.integrations.optuna import KetchCallback           # pip install "ketch[optuna]"
    from ketch.integrations.ray import KetchLoggerCallback, setup_run  # "ketch[ray]"
    from ketch.integrations.torch import init, all_reduce_metrics  # "ketch[torch]"
    from ketch.integrations.lightning import KetchLogger           # "ketch[lightning]"
    from ketch.integrations.transformers import KetchCallback      # "ketch[transformers]"

Importing a module whose framework is missing raises ``ImportError`` saying what
to install. Every integration uses the public SDK (``ketch.init``, ``ketch.Run``,
``ketch.Client``) only.
"""

__all__: list[str] = []
