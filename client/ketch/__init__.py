"""ketch: experiment tracking and model registry over gRPC.

In training code::

    import ketch

    with ketch.init(experiment="churn", config={"lr": 0.01}) as run:
        for step in range(100):
            run.log({"loss": 1 / (step + 1)}, step=step)

For queries, :class:`ketch.Client`. Errors are in :mod:`ketch.errors`.
"""

from ketch import errors
from ketch._client import Client
from ketch._lineage import Dataset, Lineage, LineageEdge, LineageNode
from ketch._registry import (
    ModelVersion,
    RegisteredModel,
    RegistryEvent,
    StagePolicy,
    TransitionRequest,
    download_model,
)
from ketch._run import (
    Run,
    active_run,
    finish,
    init,
    log,
    log_params,
    set_seed,
    set_tags,
    start_run,
)
from ketch._types import Experiment, MetricHistory, MetricSummary, RunRecord

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Dataset",
    "Experiment",
    "Lineage",
    "LineageEdge",
    "LineageNode",
    "MetricHistory",
    "MetricSummary",
    "ModelVersion",
    "RegisteredModel",
    "RegistryEvent",
    "Run",
    "RunRecord",
    "StagePolicy",
    "TransitionRequest",
    "__version__",
    "active_run",
    "download_model",
    "errors",
    "finish",
    "init",
    "log",
    "log_params",
    "set_seed",
    "set_tags",
    "start_run",
]
