"""``ketch lineage`` against a real server subprocess, in every output format."""

from __future__ import annotations

import json
import re

import ketch
import pytest

from tests.e2e.test_cli import ketch_cli, ok

pytestmark = pytest.mark.e2e


@pytest.fixture
def graph(server_process) -> dict[str, str]:
    """prep: raw -> prep -> train; fit: train -> fit -> model.pt; fit forked at step 1."""
    uri = server_process.uri
    opts = {"uri": uri, "capture_environment": False, "system_metrics": False}
    with ketch.init(experiment="cli-lineage", name="prep", **opts) as prep:
        prep.log_input(ketch.Dataset("raw", "sha256:r"), context="source")
        prep.log_output(ketch.Dataset("train", "sha256:t", num_rows=7))
    with ketch.init(experiment="cli-lineage", name='fit "quoted"', **opts) as fit:
        fit.log_input(ketch.Dataset("train", "sha256:t"))
        fit.log_output("model.pt")
        for step in range(3):
            fit.log({"loss": 1.0 / (step + 1)}, step=step)
    with ketch.Client(uri) as client:
        fork = client.fork_run(fit.id, 1, name="fit-fork")
    return {"prep": prep.id, "fit": fit.id, "fork": fork.id}


def test_lineage_in_every_format(cli_env, graph):
    fit = graph["fit"]
    tree = ok(cli_env, "lineage", f"run:{fit}")
    lines = tree.splitlines()
    assert lines[0] == f'run fit "quoted" [FINISHED] ({fit})'
    assert lines[1] == "├── upstream"
    assert "consumed [training] <- dataset train@sha256:t" in tree
    assert f"produced <- run prep [FINISHED] ({graph['prep']})" in tree
    assert "consumed [source] <- dataset raw@sha256:r" in tree
    assert "└── downstream" in tree
    assert f"produced -> artifact model.pt (run {fit}, not uploaded)" in tree
    assert f"forked from at step 1 -> run fit-fork [RUNNING] ({graph['fork']})" in tree

    up_only = ok(cli_env, "lineage", f"run:{fit}", "--direction", "up", "--depth", "1")
    assert "downstream" not in up_only and "prep" not in up_only

    dot = ok(cli_env, "lineage", f"run:{fit}", "--format", "dot")
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert f'"runs/{graph["prep"]}" -> ' in dot
    assert 'label="run\\nfit \\"quoted\\""' in dot  # quotes escaped
    assert dot.count("{") == dot.count("}")
    assert len(re.findall(r" -> ", dot)) == 5

    mermaid = ok(cli_env, "lineage", f"run:{fit}", "--format", "mermaid")
    first, *body = mermaid.strip().splitlines()
    assert first == "graph LR"
    assert all(line.startswith("  n") for line in body)
    assert sum("-->|" in line for line in body) == 5
    assert '"' not in "".join(line.split('"')[1] for line in body if "&quot;" in line)

    doc = json.loads(ok(cli_env, "lineage", f"run:{fit}", "--format", "json"))
    assert doc["root"] == f"runs/{fit}" and doc["direction"] == "both"
    assert {n["kind"] for n in doc["nodes"]} == {"run", "dataset", "artifact"}
    assert {e["kind"] for e in doc["edges"]} == {"consumed", "produced", "forked_from"}
    fork_edge = next(e for e in doc["edges"] if e["kind"] == "forked_from")
    assert fork_edge["step"] == 1 and fork_edge["downstream"] == f"runs/{graph['fork']}"

    dataset = ok(cli_env, "lineage", "dataset:train@sha256:t", "--direction", "down")
    assert dataset.splitlines()[0].startswith("dataset train@sha256:t (")
    artifact = ok(cli_env, "lineage", f"artifact:{fit}/model.pt", "--direction", "up")
    assert artifact.splitlines()[0] == f"artifact model.pt (run {fit}, not uploaded)"


def test_lineage_errors(cli_env, graph):
    model = ketch_cli(cli_env, "lineage", "model:churn/3")
    assert model.returncode == 1
    assert "model version models/churn/versions/3 not found" in model.stderr
    bad = ketch_cli(cli_env, "lineage", "dataset:nodigest")
    assert bad.returncode == 1 and "dataset:NAME@DIGEST" in bad.stderr
    missing = ketch_cli(cli_env, "lineage", "run:" + "0" * 32)
    assert missing.returncode == 1 and "not found" in missing.stderr
    usage = ketch_cli(cli_env, "lineage", f"run:{graph['fit']}", "--format", "svg")
    assert usage.returncode == 2
