"""``ketch models ...``: the model registry from the command line, for people and CI.

Usage::

    ketch models create NAME [--description D] [--tag K=V ...]
    ketch models list
    ketch models show NAME
    ketch models register NAME --run RUN [--path ARTIFACT_PATH] [--description D]
    ketch models resolve URI                     (models:/churn/3, @champion, /Production)
    ketch models download URI [--dst DIR]
    ketch models alias NAME ALIAS VERSION | ketch models alias NAME ALIAS --delete
    ketch models policy show NAME
    ketch models policy set NAME --stage STAGE [--approvals N] [--gate EXPR ...]
        [--approver-role ROLE ...] [--archive-existing | --keep-existing]
        [--max-versions N] [--expiry SECONDS] [--allow-from STAGE ...] [--no-gates]
    ketch models request NAME VERSION --stage STAGE [--comment C] [--request-id ID]
    ketch models approve REQUEST_ID [--comment C] [--evidence-url URL] [--check NAME=RESULT ...]
    ketch models reject REQUEST_ID --reason R
    ketch models cancel REQUEST_ID [--reason R]
    ketch models requests [NAME] [--state pending]
    ketch models transition NAME VERSION --stage STAGE [--comment C]   (admins: direct move)
    ketch models watch [NAME ...] [--from CURSOR] [--new] [--action A ...]
        [--max-events N] [--timeout S]
    ketch models history [NAME] [--action A ...] [--max N]

Every command takes ``--json``: a version is an object with ``name``, ``version``,
``stage``, ``aliases`` (and more); a request has ``request_id``, ``state`` (PENDING,
APPLIED, REJECTED, CANCELLED, EXPIRED, FAILED), ``approvals`` and
``approvals_required``; ``watch --json`` prints one JSON object per line.

Exit codes (for CI gates): 0 success; 1 other errors (e.g. server unreachable);
2 usage; 3 not found; 4 denied (self-approval, missing role, bad credentials);
5 policy not met (illegal move, failing gates, occupied stage, request no longer
pending or expired, artifact changed); 6 conflict (stale etag, name taken,
already voted).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ketch import errors
from ketch._client import Client
from ketch._registry import ModelVersion, RegisteredModel, RegistryEvent, TransitionRequest

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_DENIED",
    "EXIT_NOT_FOUND",
    "EXIT_POLICY",
    "add_models_command",
]

EXIT_NOT_FOUND = 3
EXIT_DENIED = 4
EXIT_POLICY = 5
EXIT_CONFLICT = 6

_EXIT_CODES: list[tuple[type[errors.KetchError], int]] = [
    (errors.NotFound, EXIT_NOT_FOUND),
    (errors.PermissionDenied, EXIT_DENIED),
    (errors.Unauthenticated, EXIT_DENIED),
    (errors.FailedPrecondition, EXIT_POLICY),
    (errors.Aborted, EXIT_CONFLICT),
    (errors.AlreadyExists, EXIT_CONFLICT),
]
_STAGES = ("none", "staging", "production", "archived")
_EPILOG = (
    "exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 denied (self-approval, missing "
    "role), 5 policy not met (illegal move, failing gates, occupied stage, request not "
    "pending), 6 conflict (stale etag, already voted)"
)

ClientFactory = Callable[[argparse.Namespace], Client]
Handler = Callable[[Client, argparse.Namespace], int]


def exit_code(exc: errors.KetchError) -> int | None:
    """The documented exit code of a registry error (None: the generic handling)."""
    for cls, code in _EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return None


def add_models_command(commands, common: argparse.ArgumentParser, client: ClientFactory) -> None:
    """Register ``ketch models`` and its actions on the ``ketch`` parser."""
    top = commands.add_parser(
        "models",
        help="the model registry: versions, stages, approvals, watch",
        description=__doc__.split("\n\n")[0],
        epilog=_EPILOG,
    )
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")

    def sub(name: str, handler: Handler, text: str, parent=common) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, parents=[parent], help=text, epilog=_EPILOG)
        parser.set_defaults(handler=lambda args: _run(handler, client, args))
        return parser

    _add_model_actions(sub)
    _add_version_actions(sub)
    _add_policy_actions(actions, common, client)
    _add_transition_actions(sub)
    _add_audit_actions(sub)


def _run(handler: Handler, client: ClientFactory, args: argparse.Namespace) -> int:
    """Run ``handler``; registry errors print ``ketch: message`` and exit with their code."""
    try:
        with client(args) as c:
            return handler(c, args)
    except errors.KetchError as exc:
        code = exit_code(exc)
        if code is None:
            raise  # ketch's generic handling (exit 1, with server hints)
        reason = f" [{exc.reason}]" if exc.reason else ""
        print(f"ketch: {exc.message}{reason}", file=sys.stderr)
        return code


# ------------------------------------------------------------------ parsers


def _add_model_actions(sub) -> None:
    create = sub("create", _create, "create a model")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="")
    create.add_argument("--tag", action="append", default=[], metavar="K=V", type=_pair)
    sub("list", _list, "list models")
    show = sub("show", _show, "a model: its versions with stages and aliases, open requests")
    show.add_argument("name", metavar="NAME")


def _add_version_actions(sub) -> None:
    register = sub("register", _register, "register a run's model as the next version")
    register.add_argument("name", metavar="NAME")
    register.add_argument("--run", required=True, metavar="RUN", help="run id")
    register.add_argument(
        "--path",
        metavar="ARTIFACT_PATH",
        help="the manifest, or a directory holding MLmodel.json (default models/NAME)",
    )
    register.add_argument("--description", default="")
    register.add_argument("--tag", action="append", default=[], metavar="K=V", type=_pair)
    register.add_argument(
        "--no-create", action="store_true", help="fail when the model does not exist"
    )
    resolve = sub("resolve", _resolve, "the version a models:/ URI names")
    resolve.add_argument("model_uri", metavar="URI", help="e.g. models:/churn@champion")
    download = sub("download", _download, "download the model files a URI names")
    download.add_argument("model_uri", metavar="URI")
    download.add_argument("--dst", default=".", help="local directory (default .)")
    alias = sub("alias", _alias, "point an alias at a version (or delete it)")
    alias.add_argument("name", metavar="NAME")
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("version", metavar="VERSION", type=int, nargs="?")
    alias.add_argument("--delete", action="store_true", help="remove the alias")


def _add_policy_actions(actions, common, client: ClientFactory) -> None:
    policy = actions.add_parser("policy", help="show or set a model's stage policies")
    verbs = policy.add_subparsers(dest="verb", required=True, metavar="VERB")
    show = verbs.add_parser("show", parents=[common], help="every stage's policy")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(handler=lambda args: _run(_policy_show, client, args))
    put = verbs.add_parser(
        "set",
        parents=[common],
        help="change the policy for moves into one stage (admins); unset flags keep "
        "their current values",
        epilog=_EPILOG,
    )
    put.add_argument("name", metavar="NAME")
    put.add_argument("--stage", required=True, choices=_STAGES, type=str.lower)
    put.add_argument("--approvals", type=int, help="approvals needed (0-10)")
    put.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="EXPR",
        help="a run filter the source run must match, e.g. 'metrics.accuracy >= 0.9' "
        "(repeatable; replaces the current gates)",
    )
    put.add_argument("--no-gates", action="store_true", help="remove every gate")
    put.add_argument(
        "--approver-role",
        action="append",
        default=[],
        choices=("reader", "writer", "approver", "admin"),
        help="who may approve: at least this role (repeatable; admins always count)",
    )
    keep = put.add_mutually_exclusive_group()
    keep.add_argument(
        "--archive-existing",
        dest="archive_existing",
        action="store_const",
        const=True,
        help="archive the stage's current holder when a version enters it",
    )
    keep.add_argument(
        "--keep-existing",
        dest="archive_existing",
        action="store_const",
        const=False,
        help="keep the current holder (a full stage then refuses the move)",
    )
    put.add_argument("--max-versions", type=int, help="versions the stage may hold (0: any)")
    put.add_argument("--expiry", type=int, metavar="SECONDS", help="request lifetime")
    put.add_argument(
        "--allow-from",
        action="append",
        default=[],
        choices=_STAGES,
        type=str.lower,
        help="also allow moves from this stage (repeatable)",
    )
    put.set_defaults(handler=lambda args: _run(_policy_set, client, args))


def _add_transition_actions(sub) -> None:
    request = sub("request", _request, "request a stage transition of a version")
    request.add_argument("name", metavar="NAME")
    request.add_argument("version", metavar="VERSION", type=int)
    request.add_argument("--stage", required=True, choices=_STAGES, type=str.lower)
    request.add_argument("--comment", default="")
    request.add_argument("--request-id", help="idempotency key (retries return the same request)")
    approve = sub("approve", _approve, "approve a pending request (as yourself)")
    approve.add_argument("request_id", metavar="REQUEST_ID")
    approve.add_argument("--comment", default="")
    approve.add_argument("--evidence-url", default="", metavar="URL", help="e.g. the CI run")
    approve.add_argument("--check", action="append", default=[], metavar="NAME=RESULT", type=_pair)
    reject = sub("reject", _reject, "reject a pending request")
    reject.add_argument("request_id", metavar="REQUEST_ID")
    reject.add_argument("--reason", required=True)
    cancel = sub("cancel", _cancel, "withdraw your pending request")
    cancel.add_argument("request_id", metavar="REQUEST_ID")
    cancel.add_argument("--reason", default="")
    requests = sub("requests", _requests, "list transition requests, newest first")
    requests.add_argument("name", metavar="NAME", nargs="?")
    requests.add_argument(
        "--state",
        type=str.upper,
        choices=("PENDING", "APPLIED", "REJECTED", "CANCELLED", "EXPIRED", "FAILED"),
    )
    requests.add_argument("--max", type=int, default=50, metavar="N")
    move = sub("transition", _transition, "move a version directly (admins; audited)")
    move.add_argument("name", metavar="NAME")
    move.add_argument("version", metavar="VERSION", type=int)
    move.add_argument("--stage", required=True, choices=_STAGES, type=str.lower)
    move.add_argument("--comment", default="")


def _add_audit_actions(sub) -> None:
    watch = sub("watch", _watch, "follow registry events as they happen", _stream_options())
    watch.add_argument("names", metavar="NAME", nargs="*", help="only these models")
    watch.add_argument("--from", dest="cursor", default="", metavar="CURSOR")
    watch.add_argument("--new", action="store_true", help="skip history: only new events")
    watch.add_argument("--action", action="append", default=[], metavar="ACTION")
    watch.add_argument("--max-events", type=int, metavar="N", help="stop after N events")
    history = sub("history", _history, "the audit trail, oldest first")
    history.add_argument("name", metavar="NAME", nargs="?")
    history.add_argument("--action", action="append", default=[], metavar="ACTION")
    history.add_argument("--max", type=int, default=0, metavar="N", help="the last N only")


def _stream_options() -> argparse.ArgumentParser:
    """Options of ``watch``: ``--timeout`` bounds the whole watch, not each call."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--uri",
        default=argparse.SUPPRESS,
        help="server URI, grpc://host:port (default KETCH_TRACKING_URI)",
    )
    options.add_argument(
        "--timeout", type=float, metavar="S", help="stop after S seconds (default: never)"
    )
    options.add_argument("--json", action="store_true", help="one JSON object per line")
    return options


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


# ------------------------------------------------------------------ models


def _create(c: Client, args: argparse.Namespace) -> int:
    model = c.create_model(args.name, args.description, dict(args.tag))
    return _out(args, model_json(model), f"created model {model.name}")


def _list(c: Client, args: argparse.Namespace) -> int:
    models = list(c.iter_models())
    if args.json:
        return _out(args, {"models": [model_json(m) for m in models]})
    rows = [
        [m.name, str(m.latest_version), _aliases(m.aliases), m.owner, _when(m.update_time)]
        for m in models
    ]
    print(_table(["name", "versions", "aliases", "owner", "updated"], rows) or "no models")
    return 0


def _show(c: Client, args: argparse.Namespace) -> int:
    model = c.get_model(args.name)
    versions = list(c.iter_model_versions(model.name))
    pending = list(c.iter_transition_requests(model.name, state="PENDING"))
    if args.json:
        doc = model_json(model)
        doc["versions"] = [version_json(v) for v in versions]
        doc["pending_requests"] = [request_json(r) for r in pending]
        return _out(args, doc)
    print(f"model {model.name} (owner {model.owner or '-'}, {model.latest_version} versions)")
    if model.description:
        print(model.description)
    rows = [
        [str(v.version), v.stage.title(), ", ".join(v.aliases), v.run_id[:12], _when(v.create_time)]
        for v in versions
    ]
    print(_table(["version", "stage", "aliases", "run", "registered"], rows) or "no versions")
    for r in pending:
        print(f"pending: {_request_line(r)}")
    return 0


# ---------------------------------------------------------------- versions


def _register(c: Client, args: argparse.Namespace) -> int:
    version = c.register_model(
        args.name,
        args.run,
        args.path,
        description=args.description,
        tags=dict(args.tag),
        create=not args.no_create,
    )
    return _out(
        args, version_json(version), f"registered {version.uri} (sha256 {version.digest[:12]})"
    )


def _resolve(c: Client, args: argparse.Namespace) -> int:
    version = c.get_model_version(args.model_uri)
    return _out(args, version_json(version), _version_line(version))


def _download(c: Client, args: argparse.Namespace) -> int:
    path = c.download_model(args.model_uri, args.dst)
    return _out(args, {"path": path}, path)


def _alias(c: Client, args: argparse.Namespace) -> int:
    if args.delete:
        model = c.delete_alias(args.name, args.alias)
        return _out(args, model_json(model), f"deleted alias {args.alias} of {model.name}")
    if args.version is None:
        raise errors.InvalidArgument("give the VERSION the alias points at, or --delete")
    version = c.set_alias(args.name, args.alias, args.version)
    return _out(
        args, version_json(version), f"models:/{version.model}@{args.alias} -> {version.version}"
    )


# ---------------------------------------------------------------- policies


def _policy_show(c: Client, args: argparse.Namespace) -> int:
    policies = c.get_policy(args.name)
    if args.json:
        return _out(
            args, {"model": args.name, "stages": [policy_json(p) for p in policies.values()]}
        )
    rows = [
        [
            p.stage.title(),
            str(p.approvals_required),
            ",".join(p.approver_roles),
            "; ".join(p.gates),
            "archive" if p.archive_existing else "keep",
            str(p.max_versions or "any"),
            f"{p.expiry_seconds}s",
            "" if p.is_default else "set",
        ]
        for p in policies.values()
    ]
    headers = ["stage", "approvals", "approvers", "gates", "holder", "max", "expiry", ""]
    print(_table(headers, rows))
    return 0


def _policy_set(c: Client, args: argparse.Namespace) -> int:
    current = c.get_policy(args.name)[args.stage.upper()]
    gates = [] if args.no_gates else (args.gate or list(current.gates))
    policies = c.set_policy(
        args.name,
        args.stage,
        approvals=_given(args.approvals, current.approvals_required),
        approver_roles=args.approver_role or list(current.approver_roles),
        gates=gates,
        archive_existing=_given(args.archive_existing, current.archive_existing),
        max_versions=_given(args.max_versions, current.max_versions),
        expiry_seconds=_given(args.expiry, current.expiry_seconds),
        allowed_from=args.allow_from or list(current.allowed_from),
    )
    policy = policies[args.stage.upper()]
    text = f"policy for {args.stage.title()} of {args.name}: {policy.approvals_required} approvals"
    return _out(args, policy_json(policy), text)


def _given(value: Any, current: Any) -> Any:
    return current if value is None else value


# ------------------------------------------------------------- transitions


def _request(c: Client, args: argparse.Namespace) -> int:
    req = c.request_transition(
        args.name, args.version, args.stage, comment=args.comment, request_id=args.request_id
    )
    return _out(args, request_json(req), _request_line(req))


def _approve(c: Client, args: argparse.Namespace) -> int:
    req = c.approve(
        args.request_id,
        comment=args.comment,
        evidence_url=args.evidence_url,
        checks=dict(args.check),
    )
    return _out(args, request_json(req), _request_line(req))


def _reject(c: Client, args: argparse.Namespace) -> int:
    req = c.reject(args.request_id, args.reason)
    return _out(args, request_json(req), _request_line(req))


def _cancel(c: Client, args: argparse.Namespace) -> int:
    req = c.cancel_transition_request(args.request_id, args.reason)
    return _out(args, request_json(req), _request_line(req))


def _requests(c: Client, args: argparse.Namespace) -> int:
    found: list[TransitionRequest] = []
    for r in c.iter_transition_requests(args.name, state=args.state):
        found.append(r)
        if len(found) >= args.max > 0:
            break
    if args.json:
        return _out(args, {"requests": [request_json(r) for r in found]})
    for r in found:
        print(_request_line(r))
    if not found:
        print("no requests")
    return 0


def _transition(c: Client, args: argparse.Namespace) -> int:
    version = c.transition_stage(args.name, args.version, args.stage, comment=args.comment)
    return _out(args, version_json(version), _version_line(version))


# ------------------------------------------------------------------- audit


def _watch(c: Client, args: argparse.Namespace) -> int:
    """Print events until --max-events or --timeout says stop (or Ctrl-C)."""
    if args.max_events is not None and args.max_events <= 0:
        return 0
    events = c.watch_registry(
        args.names,
        actions=args.action,
        from_cursor=args.cursor,
        start_at_end=args.new,
        timeout=args.timeout,
    )
    for count, event in enumerate(events, 1):
        if args.json:
            print(json.dumps(event_json(event), separators=(",", ":")), flush=True)
        else:
            print(_event_line(event), flush=True)
        if args.max_events is not None and count >= args.max_events:
            break
    return 0


def _history(c: Client, args: argparse.Namespace) -> int:
    events = list(c.audit_log(args.name, actions=args.action))
    if args.max > 0:
        events = events[-args.max :]
    if args.json:
        return _out(args, {"events": [event_json(e) for e in events]})
    for event in events:
        print(_event_line(event))
    if not events:
        print("no events")
    return 0


# -------------------------------------------------------------------- JSON


def model_json(m: RegisteredModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "tags": dict(sorted(m.tags.items())),
        "owner": m.owner,
        "latest_version": m.latest_version,
        "aliases": dict(m.aliases),
        "create_time": _iso(m.create_time),
        "update_time": _iso(m.update_time),
        "etag": m.etag,
    }


def version_json(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.model,
        "version": v.version,
        "stage": v.stage,
        "aliases": list(v.aliases),
        "uri": v.uri,
        "run_id": v.run_id,
        "source_path": v.source_path,
        "digest": v.digest,
        "description": v.description,
        "tags": dict(sorted(v.tags.items())),
        "creator": v.creator,
        "create_time": _iso(v.create_time),
        "stage_time": _iso(v.stage_time),
        "etag": v.etag,
    }


def request_json(r: TransitionRequest) -> dict[str, Any]:
    return {
        "request_id": r.id,
        "name": r.model,
        "version": r.version,
        "from_stage": r.from_stage,
        "target_stage": r.target_stage,
        "state": r.state,
        "approvals": r.approvals,
        "approvals_required": r.approvals_required,
        "requester": r.requester,
        "comment": r.comment,
        "digest": r.digest,
        "resolution": r.resolution,
        "votes": [{**dataclasses.asdict(v), "create_time": _iso(v.create_time)} for v in r.votes],
        "create_time": _iso(r.create_time),
        "expire_time": _iso(r.expire_time),
    }


def policy_json(p) -> dict[str, Any]:
    return {
        "stage": p.stage,
        "approvals_required": p.approvals_required,
        "approver_roles": list(p.approver_roles),
        "gates": list(p.gates),
        "archive_existing": p.archive_existing,
        "max_versions": p.max_versions,
        "expiry_seconds": p.expiry_seconds,
        "allowed_from": list(p.allowed_from),
        "is_default": p.is_default,
    }


def event_json(e: RegistryEvent) -> dict[str, Any]:
    return {
        "cursor": e.cursor,
        "sequence": e.sequence,
        "time": _iso(e.time),
        "actor": e.actor,
        "action": e.action,
        "resource": e.resource,
        "model": e.model,
        "before": e.before,
        "after": e.after,
        "request_id": e.request_id,
    }


# ------------------------------------------------------------------- text


def _out(args: argparse.Namespace, doc: dict[str, Any], text: str = "") -> int:
    print(json.dumps(doc, indent=2) if args.json else text)
    return 0


def _iso(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _when(when: dt.datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M") if when else ""


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}->{v}" for a, v in aliases.items())


def _version_line(v: ModelVersion) -> str:
    aliases = f" @{' @'.join(v.aliases)}" if v.aliases else ""
    return f"{v.uri} {v.stage.title()}{aliases} (run {v.run_id}, sha256 {v.digest[:12]})"


def _request_line(r: TransitionRequest) -> str:
    line = (
        f"{r.id} {r.state} models:/{r.model}/{r.version} {r.from_stage.title()} -> "
        f"{r.target_stage.title()} ({r.approvals}/{r.approvals_required} approvals, "
        f"by {r.requester})"
    )
    return f"{line}: {r.resolution}" if r.resolution else line


def _event_line(e: RegistryEvent) -> str:
    detail = json.dumps(e.after, separators=(",", ":"), sort_keys=True) if e.after else ""
    return f"{e.cursor:>6} {_iso(e.time)} {e.actor} {e.action} {e.resource} {detail}".rstrip()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    lines = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
