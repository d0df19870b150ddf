"""The Helm chart: it lints, renders manifests that validate against the Kubernetes
schemas (offline), and renders what the operations guide promises."""

from __future__ import annotations

import argparse
import copy
import socket
import subprocess
from typing import Any

import pytest
import yaml
from ketch_server.settings import add_arguments, from_args

from tests.deploy.conftest import CHART

KUBE_VERSION = "1.30.0"
TEST_VALUES = CHART / "ci" / "test-values.yaml"
# TLS with client certificates, and credentials from existing Secrets.
MTLS = [
    "--set", "tls.secretName=ketch-tls",
    "--set", "server.auth=mtls",
    "--set", "database.existingSecret=ketch-db",
    "--set", "artifacts.s3.existingSecret=ketch-s3",
]  # fmt: skip


def _helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)


def _render(helm: str, *args: str) -> list[dict[str, Any]]:
    done = _helm(
        helm, "template", "rel", str(CHART), "--kube-version", KUBE_VERSION,
        "-f", str(TEST_VALUES), *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def _env_names() -> set[str]:
    """Every KETCH_* variable the server reads (from its flags' help)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    names = {"KETCH_LOG_JSON"}
    for action in parser._actions:
        if action.help and "[env " in action.help:
            names.add(action.help.rsplit("[env ", 1)[1].rstrip("]"))
    return names


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("extra", [[], MTLS], ids=["token", "mtls"])
def test_chart_lints_strictly(helm, extra):
    done = _helm(helm, "lint", "--strict", str(CHART), "-f", str(TEST_VALUES), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "database.url="], "set database.url"),
        (["--set", "database.url=mysql://x/y"], "must be a postgresql"),
        (["--set", "artifacts.location="], "artifacts.location must be s3://"),
        (["--set", "server.auth=ldap"], "server.auth must be none, token or mtls"),
        (["--set", "server.auth=mtls"], "needs tls.secretName"),
    ],
)
def test_values_that_cannot_work_fail_with_the_fix(helm, args, message):
    done = _helm(
        helm, "template", "rel", str(CHART), "--kube-version", KUBE_VERSION,
        "-f", str(TEST_VALUES), *args,
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr


# ----------------------------------------------------------------- schema validity


@pytest.mark.parametrize("extra", [[], MTLS], ids=["token", "mtls"])
def test_rendered_manifests_match_the_kubernetes_schemas_offline(
    helm, kubernetes_validate, monkeypatch, extra
):
    docs = _render(helm, *extra)
    kinds = {"Deployment", "Service", "Job", "ConfigMap", "ServiceAccount", "PodDisruptionBudget"}
    assert {d["kind"] for d in docs} >= (kinds if extra else {*kinds, "Secret"})

    def no_network(*_args, **_kwargs):
        raise AssertionError("kubernetes-validate tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_the_validator_rejects_a_broken_deployment(helm, kubernetes_validate):
    """The schema check has teeth: a typo'd field and a wrong type are caught."""
    deployment = _one(_render(helm), "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = (
        "grpc"  # the grpc probe takes a number, not a port name
    )
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


# ------------------------------------------------------------------- the contents


def test_deployment_runs_replicas_safely_with_grpc_probes(helm):
    docs = _render(helm, "--set", "replicaCount=5")
    deployment = _one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 5
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]
    port = container["ports"][0]["containerPort"]
    assert container["livenessProbe"]["grpc"] == {"port": port, "service": "liveness"}
    assert container["readinessProbe"]["grpc"] == {"port": port}
    assert pod["terminationGracePeriodSeconds"] > 20  # the server's grace plus preStop
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/ketch", "/tmp"} <= mounts  # writable despite the read-only root


def test_headless_and_normal_services_select_the_server_pods(helm):
    docs = _render(helm)
    pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    normal = _one(docs, "Service", "rel-ketch")
    headless = _one(docs, "Service", "rel-ketch-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert normal["spec"].get("clusterIP") != "None"
    for service in (normal, headless):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "grpc"
    job_labels = _one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not normal["spec"]["selector"].items() <= job_labels.items()


def test_migration_job_is_a_hook_that_reads_a_hook_secret(helm):
    docs = _render(helm)
    job = _one(docs, "Job")
    hook_secret = _one(docs, "Secret", "rel-ketch-migrate")
    job_hook = job["metadata"]["annotations"]
    secret_hook = hook_secret["metadata"]["annotations"]
    assert job_hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert secret_hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    # The Secret exists before the Job: lower weight runs first.
    assert int(secret_hook["helm.sh/hook-weight"]) < int(job_hook["helm.sh/hook-weight"])
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["ketch", "db", "upgrade"]
    (db_env,) = [e for e in container["env"] if e["name"] == "KETCH_DB"]
    assert db_env["valueFrom"]["secretKeyRef"]["name"] == "rel-ketch-migrate"
    assert hook_secret["stringData"]["database-url"].startswith("postgresql+asyncpg://")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_existing_secrets_are_used_instead_of_the_charts(helm):
    docs = _render(helm, *MTLS)
    assert not [d for d in docs if d["kind"] == "Secret"]  # nothing of the chart's own
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
            and "secretKeyRef" in e["valueFrom"]}  # fmt: skip
    assert refs["KETCH_DB"] == {"name": "ketch-db", "key": "database-url"}
    assert refs["KETCH_S3_SECRET_KEY"]["name"] == "ketch-s3"
    assert "--tls-cert" in container["readinessProbe"]["exec"]["command"]  # mTLS probes
    job_env = _one(docs, "Job")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert job_env[0]["valueFrom"]["secretKeyRef"]["name"] == "ketch-db"


def test_configuration_reaches_the_server_as_settings_it_reads(helm):
    docs = _render(helm)
    config = _one(docs, "ConfigMap")["data"]
    secret = _one(docs, "Secret", "rel-ketch")["stringData"]
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = dict(config)
    env["KETCH_DB"] = secret["database-url"]
    env["KETCH_S3_ACCESS_KEY"] = secret["s3-access-key"]
    env["KETCH_S3_SECRET_KEY"] = secret["s3-secret-key"]
    unknown = {k for k in env if k.startswith("KETCH_")} - _env_names()
    assert not unknown, f"the server reads no {unknown}"

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    # The image's entrypoint is `ketch server --host 0.0.0.0`; the chart appends args.
    settings = from_args(parser.parse_args(["--host", "0.0.0.0", *container["args"]]), env)
    assert settings.max_connection_age_seconds == 300
    assert settings.db_url and settings.db_url.startswith("postgresql+asyncpg://")
    assert settings.artifacts.startswith("s3://") and settings.s3_secure is False
    assert settings.auth == "token" and settings.allow_plaintext_tokens
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4317")
