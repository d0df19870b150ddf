"""deploy/Dockerfile, read as instructions (Docker is not needed): two stages, a
non-root user, a gRPC health check, the port, and an entrypoint that works."""

from __future__ import annotations

import importlib.util
import json
import shlex
from typing import NamedTuple

import pytest

from tests.deploy.conftest import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"


class Instruction(NamedTuple):
    stage: int  # index of the FROM it belongs to
    keyword: str
    args: str


def _instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    stage = -1
    out = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword.upper(), args.strip()))
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return _instructions()


def _exec_form(args: str) -> list[str]:
    return json.loads(args)


def test_multi_stage_build_on_slim_python(instructions):
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0].startswith("python:") and froms[0].split()[0].endswith("-slim")
    assert froms[0].endswith(" AS build")
    assert froms[1].startswith("python:") and froms[1].endswith("-slim")
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN" and i.stage == 0)
    assert 'pip install ".[all]"' in runs
    copies = [i.args for i in instructions if i.keyword == "COPY" and i.stage == 1]
    assert any(c.startswith("--from=build ") for c in copies)


def test_runs_as_a_non_root_user(instructions):
    users = [i for i in instructions if i.keyword == "USER"]
    assert users and users[-1].stage == 1
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    assert int(user) >= 1000
    final = instructions.index(users[-1])
    assert not [i for i in instructions[final:] if i.keyword == "USER" and i.args in ("root", "0")]


def test_healthcheck_uses_grpc_health_through_a_real_module(instructions):
    (check,) = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    options, _, command = check.args.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    assert _exec_form(command) == ["python", "-m", "ketch_server.healthcheck"]
    assert importlib.util.find_spec("ketch_server.healthcheck") is not None


def test_exposes_the_grpc_port_and_serves_on_all_interfaces(instructions):
    (expose,) = [i for i in instructions if i.keyword == "EXPOSE"]
    assert expose.args.split() == ["50051"]
    (entrypoint,) = [i for i in instructions if i.keyword == "ENTRYPOINT"]
    assert _exec_form(entrypoint.args) == ["ketch", "server", "--host", "0.0.0.0"]


def test_copied_sources_exist_and_pass_the_ignore_file(instructions):
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].removesuffix("/**") for line in ignore if line.startswith("!")}
    for copy in (i for i in instructions if i.keyword == "COPY" and i.stage == 0):
        *sources, _dest = shlex.split(copy.args)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source in allowed, f"{source} is excluded by Dockerfile.dockerignore"
