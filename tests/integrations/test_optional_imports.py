"""Frameworks stay optional: ``import ketch`` pulls in none of them, and an integration
whose framework is missing says what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("torch", "optuna", "ray", "lightning", "transformers")


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_import_ketch_and_its_integrations_package_pull_in_no_framework():
    proc = python(
        "import sys, ketch, ketch.integrations, ketch.integrations._common\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize(
    ("module", "blocked"),
    [
        ("optuna", "optuna"),
        ("ray", "ray"),
        ("torch", "torch"),
        ("lightning", "lightning"),
        ("transformers", "transformers"),
    ],
)
def test_a_missing_framework_says_what_to_install(module, blocked):
    proc = python(
        f"import sys\nsys.modules[{blocked!r}] = None\n"
        "try:\n"
        f"    import ketch.integrations.{module}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"ketch.integrations.{module} needs {blocked}, which is not installed; "
        f'install it with: pip install "ketch[{module}]"'
    )
