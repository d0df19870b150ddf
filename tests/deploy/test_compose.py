"""deploy/docker-compose.yml: the services, their health checks and start order, and
the wiring between them (Docker is not needed: the file is read, not run)."""

from __future__ import annotations

import argparse
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from ketch_server.settings import add_arguments, from_args

from tests.deploy.conftest import DEPLOY, ROOT
from tests.deploy.test_helm import _env_names

COMPOSE = DEPLOY / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _expand(value: str) -> str:
    """``${VAR:-default}`` as compose expands it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: _expand(v) for k, v in (service.get("environment") or {}).items()}


def test_the_stack_has_every_service(compose):
    assert set(compose["services"]) == {
        "postgres", "minio", "minio-init", "ketch-migrate", "ketch", "otel-collector", "jaeger",
    }  # fmt: skip


def test_stateful_services_and_ketch_have_healthchecks(compose):
    services = compose["services"]
    for name in ("postgres", "minio", "ketch"):
        check = services[name]["healthcheck"]["test"]
        assert check[0] in ("CMD", "CMD-SHELL") and len(check) > 1, name
    assert services["ketch"]["healthcheck"]["test"][1:] == [
        "python", "-m", "ketch_server.healthcheck",
    ]  # fmt: skip


def test_start_order_waits_for_health_and_one_shots(compose):
    def depends(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in compose["services"][name]["depends_on"].items()}

    assert depends("ketch") == {
        "postgres": "service_healthy",
        "minio-init": "service_completed_successfully",
        "ketch-migrate": "service_completed_successfully",
        "otel-collector": "service_started",
    }
    assert depends("ketch-migrate") == {"postgres": "service_healthy"}
    assert depends("minio-init") == {"minio": "service_healthy"}
    assert depends("otel-collector") == {"jaeger": "service_started"}
    for one_shot in ("minio-init", "ketch-migrate"):
        assert compose["services"][one_shot]["restart"] == "no"


def test_ketch_settings_point_at_the_other_services(compose):
    services = compose["services"]
    ketch, postgres = services["ketch"], services["postgres"]
    env = _env(ketch)
    assert {k for k in env if k.startswith("KETCH_")} <= _env_names()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    # The image's entrypoint is `ketch server --host 0.0.0.0`; compose appends `command`.
    settings = from_args(parser.parse_args(["--host", "0.0.0.0", *ketch["command"]]), env)

    db = urlsplit(settings.db_url or "")
    pg = _env(postgres)
    assert db.scheme == "postgresql+asyncpg" and db.hostname == "postgres"
    assert (db.username, db.password, db.path) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], "/" + pg["POSTGRES_DB"],
    )  # fmt: skip
    assert settings.allow_anonymous and settings.max_connection_age_seconds == 300

    minio = _env(services["minio"])
    assert settings.s3_endpoint == "minio:9000" and settings.s3_secure is False
    assert (settings.s3_access_key, settings.s3_secret_key) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"],
    )  # fmt: skip
    bucket = urlsplit(settings.artifacts).netloc
    init = " ".join(services["minio-init"]["entrypoint"])
    assert f"mc mb --ignore-existing local/{bucket}" in init
    assert f"mc version enable local/{bucket}" in init

    assert _env(services["ketch-migrate"]) == {
        k: v for k, v in env.items() if k.startswith("KETCH_")
    }
    assert services["ketch-migrate"]["entrypoint"] == ["ketch", "db", "upgrade"]


def test_traces_flow_from_ketch_through_the_collector_to_jaeger(compose):
    services = compose["services"]
    endpoint = urlsplit(_env(services["ketch"])["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector"
    mount = next(v for v in services["otel-collector"]["volumes"] if "otel-collector" in v)
    source, target = mount.split(":")[:2]
    assert services["otel-collector"]["command"] == [f"--config={target}"]
    config = yaml.safe_load((DEPLOY / source).read_text())
    grpc_receiver = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc_receiver.endswith(f":{endpoint.port}")
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    (exporter,) = traces["exporters"]
    assert config["exporters"][exporter]["endpoint"].startswith("jaeger:")
    assert _env(services["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "metrics" in config["service"]["pipelines"]


def test_volumes_are_declared_and_ports_stay_on_loopback(compose):
    services = compose["services"]
    declared = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} publicly"
    assert services["ketch"]["volumes"] == ["ketch-data:/var/lib/ketch"]
    assert services["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]


def test_the_image_is_built_from_the_repository(compose):
    for name in ("ketch", "ketch-migrate"):
        build = compose["services"][name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()
