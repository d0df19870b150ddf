"""Pin the SDK's public surface, and keep optional dependencies optional."""

from __future__ import annotations

import subprocess
import sys

import ketch


def test_public_names_are_pinned():
    assert sorted(ketch.__all__) == sorted(
        [
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
    )
    for name in ketch.__all__:
        assert hasattr(ketch, name), name


def test_error_tree_is_rooted_in_ketch_error():
    for name in ketch.errors.__all__:
        assert issubclass(getattr(ketch.errors, name), ketch.errors.KetchError)
    assert issubclass(ketch.errors.ParamConflict, ketch.errors.FailedPrecondition)
    assert issubclass(ketch.errors.InvalidArgument, ValueError)


def test_import_ketch_pulls_in_no_server_or_heavy_framework():
    code = (
        "import sys, ketch; "
        "bad = [m for m in ('ketch_server', 'sqlalchemy', 'torch', 'optuna', 'ray', 'pandas') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
