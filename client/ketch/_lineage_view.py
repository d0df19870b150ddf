"""``ketch lineage NODE``: the lineage graph as a tree, Graphviz dot, Mermaid or JSON.

The renderers are pure functions of a :class:`ketch.Lineage`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from ketch._client import Client
from ketch._lineage import Lineage, LineageEdge, LineageNode

__all__ = ["add_lineage_command", "to_dot", "to_json", "to_mermaid", "to_tree"]

_FORMATS = ("tree", "dot", "mermaid", "json")


def add_lineage_command(
    commands, common: argparse.ArgumentParser, client: Callable[[argparse.Namespace], Client]
) -> None:
    sub = commands.add_parser(
        "lineage",
        parents=[common],
        help="show where a run, dataset or artifact came from and what came from it",
        description=(
            "NODE is run:ID, dataset:NAME@DIGEST, artifact:RUN_ID/PATH or model:NAME/VERSION. "
            "Edges point downstream: input -> run (consumed), run -> output (produced), "
            "parent -> child run, source -> fork."
        ),
    )
    sub.add_argument("node", metavar="NODE")
    sub.add_argument(
        "--direction",
        choices=("up", "down", "both"),
        default="both",
        help="up: ancestors, down: descendants, both (default)",
    )
    sub.add_argument("--depth", type=int, default=5, help="edges to follow, 1-32 (default 5)")
    sub.add_argument(
        "--format", choices=_FORMATS, default=None, help="tree (default), dot, mermaid or json"
    )
    sub.set_defaults(handler=lambda args: _lineage(args, client))


def _lineage(args: argparse.Namespace, client: Callable[[argparse.Namespace], Client]) -> int:
    fmt = args.format or ("json" if args.json else "tree")
    with client(args) as c:
        graph = c.get_lineage(args.node, args.direction, args.depth)
    render = {"tree": to_tree, "dot": to_dot, "mermaid": to_mermaid, "json": to_json}[fmt]
    print(render(graph))
    return 0


# -------------------------------------------------------------------- tree


def _describe(node: LineageNode) -> str:
    if node.kind == "run":
        state = f" [{node.run_state}]" if node.run_state else ""
        return f"run {node.label}{state} ({node.id})"
    if node.kind == "dataset":
        rows = node.dataset.num_rows if node.dataset else None
        extra = f", {rows} rows" if rows is not None else ""
        return f"dataset {node.label} ({node.id}{extra})"
    if node.kind == "artifact":
        missing = ", not uploaded" if not node.exists else ""
        return f"artifact {node.path} (run {node.run_id}{missing})"
    return f"{node.kind.replace('_', ' ')} {node.label}"


def _edge_text(edge: LineageEdge) -> str:
    text = edge.kind.replace("_", " ")
    if edge.context:
        text += f" [{edge.context}]"
    if edge.step is not None:
        text += f" at step {edge.step}"
    return text


def to_tree(graph: Lineage) -> str:
    """The graph as an indented tree from the root: upstream (what it came from) and
    downstream (what came from it). A node met again is not expanded twice."""
    by_name = {n.name: n for n in graph.nodes}
    lines = [_describe(graph.root)]
    sections = []
    if graph.direction in ("up", "both"):
        sections.append(("upstream", lambda e: e.downstream, lambda e: e.upstream, "<-"))
    if graph.direction in ("down", "both"):
        sections.append(("downstream", lambda e: e.upstream, lambda e: e.downstream, "->"))
    for i, (title, here, there, arrow) in enumerate(sections):
        last_section = i == len(sections) - 1
        lines.append(("└── " if last_section else "├── ") + title)
        prefix = "    " if last_section else "│   "
        children: dict[str, list[LineageEdge]] = {}
        for edge in graph.edges:
            children.setdefault(here(edge), []).append(edge)
        seen = {graph.root.name}
        _branch(lines, graph.root.name, children, there, arrow, by_name, seen, prefix)
        if not children.get(graph.root.name):
            lines.append(prefix + "└── (nothing)")
    return "\n".join(lines)


def _branch(lines, name, children, there, arrow, by_name, seen, prefix) -> None:
    edges = sorted(children.get(name, []), key=lambda e: (e.kind, there(e)))
    for i, edge in enumerate(edges):
        last = i == len(edges) - 1
        target = there(edge)
        node = by_name.get(target)
        text = _describe(node) if node else target
        again = target in seen
        suffix = " (shown above)" if again and children.get(target) else ""
        lines.append(
            f"{prefix}{'└── ' if last else '├── '}{_edge_text(edge)} {arrow} {text}{suffix}"
        )
        if not again:
            seen.add(target)
            _branch(
                lines,
                target,
                children,
                there,
                arrow,
                by_name,
                seen,
                prefix + ("    " if last else "│   "),
            )


# ---------------------------------------------------------------- dot, mermaid

_DOT_SHAPES = {
    "run": "box",
    "dataset": "cylinder",
    "artifact": "note",
    "model_version": "component",
}


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Lineage) -> str:
    """Graphviz: ``ketch lineage NODE --format dot | dot -Tsvg > lineage.svg``."""
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node in graph.nodes:
        attrs = [
            f"label={_dot_quote(node.kind.replace('_', ' ') + chr(10) + node.label)}",
            f"shape={_DOT_SHAPES.get(node.kind, 'ellipse')}",
        ]
        if node.name == graph.root.name:
            attrs.append("penwidth=2")
        if not node.exists:
            attrs.append("style=dashed")
        lines.append(f"  {_dot_quote(node.name)} [{', '.join(attrs)}];")
    for edge in graph.edges:
        label = _dot_quote(_edge_text(edge))
        lines.append(
            f"  {_dot_quote(edge.upstream)} -> {_dot_quote(edge.downstream)} [label={label}];"
        )
    lines.append("}")
    return "\n".join(lines)


_MERMAID_SHAPES = {
    "run": ('["', '"]'),
    "dataset": ('[("', '")]'),
    "artifact": ('>"', '"]'),
    "model_version": ('{{"', '"}}'),
}


def _mermaid_text(text: str) -> str:
    # Mermaid has no escapes inside quoted labels, only HTML entities.
    return (
        text.replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "&#124;")
    )


def to_mermaid(graph: Lineage) -> str:
    """Mermaid (renders in GitHub markdown inside a ```mermaid block)."""
    ids = {node.name: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["graph LR"]
    for node in graph.nodes:
        left, right = _MERMAID_SHAPES.get(node.kind, ('["', '"]'))
        label = _mermaid_text(f"{node.kind.replace('_', ' ')}: {node.label}")
        lines.append(f"  {ids[node.name]}{left}{label}{right}")
    for edge in graph.edges:
        if edge.upstream in ids and edge.downstream in ids:
            text = _mermaid_text(_edge_text(edge))
            lines.append(f"  {ids[edge.upstream]} -->|{text}| {ids[edge.downstream]}")
    return "\n".join(lines)


# -------------------------------------------------------------------- json


def to_json(graph: Lineage) -> str:
    """One strict JSON document: root, direction, nodes and edges."""

    def plain(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.isoformat().replace("+00:00", "Z")
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    doc = {
        "root": graph.root.name,
        "direction": graph.direction,
        "nodes": [plain(dataclasses.asdict(n)) for n in graph.nodes],
        "edges": [plain(dataclasses.asdict(e)) for e in graph.edges],
    }
    return json.dumps(doc, indent=2, allow_nan=False)
