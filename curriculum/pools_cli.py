"""``curriculum pools``: list, delete and prune pools in Redis (``--backend-url``) or /dev/shm.

An operator can remove a pool without its config::

    curriculum pools list --backend-url redis://HOST:6379/0
    curriculum pools delete exp1 --backend-url redis://HOST:6379/0      # asks for the session
    curriculum pools prune --older-than 7d --backend-url redis://HOST:6379/0 --yes
    curriculum pools list                                               # /dev/shm on this host

Redis pools are aged by their last write (the server's clock); a deleted pool still in use is
re-created empty by its next user (``on_pool_lost="recreate"``). /dev/shm pools are removed only
when orphaned and unused (``curriculum shm clean``'s rules), aged by their file's last change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import redis

from backends.redis_admin import delete_pool, list_pools
from backends.redis_connection import connect, summarise
from backends.redis_pool_info import describe_age
from curriculum.errors import ConfigError
from curriculum.redaction import redact_url

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a number with s, m, h, d or w (e.g. 7d)"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``pools`` and its actions on the ``curriculum`` command."""
    pools = commands.add_parser(
        "pools",
        help="list, delete or prune pools (Redis with --backend-url, else /dev/shm)",
        description="List, delete or prune curriculum pools without their config.",
    )
    actions = pools.add_subparsers(dest="pools_command", required=True)
    listing = actions.add_parser(
        "list",
        help="every pool: state, age, idle time, outcomes",
        description="List every pool with its state, age, idle time and outcomes.",
    )
    delete = actions.add_parser(
        "delete",
        help="remove one pool (asks for its session id)",
        description="Remove one pool, for every process using it (asks for its session id "
        "unless --yes).",
    )
    delete.add_argument("session", help="the pool's session id")
    prune = actions.add_parser(
        "prune",
        help="remove pools not written to for a while",
        description="Remove the pools nobody wrote to for at least --older-than.",
    )
    prune.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="idle at least this long: 90s, 15m, 2h, 7d, 1w",
    )
    prune.add_argument("--dry-run", action="store_true", help="report, remove nothing")
    for sub in (listing, delete, prune):
        sub.add_argument("--backend-url", default=None, metavar="URL", help="a Redis URL")
        sub.add_argument("--json", action="store_true", help="print JSON")
    for sub in (delete, prune):
        sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    ask: Callable[[str], str] | None = None,
) -> int:
    """Run ``curriculum pools ACTION``; the exit code (2: a pool could not be removed)."""
    out, err = out or sys.stdout, err or sys.stderr
    ask = ask or input
    if args.backend_url is None:
        return _run_shm(args, out, err, ask)
    return _run_redis(args, out, err, ask)


def _confirmed(
    prompt: str, expected: str, args: argparse.Namespace, ask: Callable[[str], str]
) -> bool:
    if args.yes:
        return True
    try:
        return ask(prompt).strip() == expected
    except EOFError:
        return False


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else describe_age(seconds)


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


# -- Redis ---------------------------------------------------------------------------------------


def _run_redis(
    args: argparse.Namespace, out: TextIO, err: TextIO, ask: Callable[[str], str]
) -> int:
    url = args.backend_url
    client = connect(url)
    try:
        return _redis_action(args, client, url, out, err, ask)
    except redis.RedisError as exc:
        print(f"curriculum pools: Redis at {redact_url(url)}: {summarise(exc, url)}", file=err)
        return 2
    finally:
        client.close()


def _redis_action(
    args: argparse.Namespace,
    client: redis.Redis,
    url: str,
    out: TextIO,
    err: TextIO,
    ask: Callable[[str], str],
) -> int:
    where = redact_url(url)
    if args.pools_command == "list":
        infos = list_pools(client)
        if args.json:
            json.dump([i.to_dict() for i in infos], out, indent=2)
            print(file=out)
        elif not infos:
            print(f"no pools at {where}", file=out)
        else:
            rows = [
                [
                    i.session,
                    i.state,
                    _age(i.created_s_ago),
                    _age(i.idle_s),
                    str(i.outcomes),
                    f"{i.active}/{i.capacity}",
                    "yes" if i.expires else "no",
                    i.creator or "-",
                ]
                for i in infos
            ]
            header = ["session", "state", "age", "idle", "outcomes", "tasks", "expires", "creator"]
            _table(header, rows, out)
        return 0
    if args.pools_command == "delete":
        _check_session(args.session)
        [info] = list_pools(client, args.session)
        if info.state == "missing" and not info.registered:
            print(f"curriculum pools: no pool {args.session!r} at {where}", file=err)
            return 2
        prompt = (
            f"delete pool {args.session!r} at {where} ({info.outcomes} outcomes, idle "
            f"{_age(info.idle_s)}; processes still using it re-create it empty)? "
            "Type its session id to confirm: "
        )
        if not _confirmed(prompt, args.session, args, ask):
            print("not deleted", file=err)
            return 1
        removed = delete_pool(client, args.session)
        _report(args, out, [{"session": args.session, "action": "deleted", "keys": removed}])
        return 0
    # prune: idle pools, and registry entries whose pool is gone
    infos = list_pools(client)
    old = [
        i
        for i in infos
        if i.state == "missing" or (i.idle_s is not None and i.idle_s >= args.older_than)
    ]
    return _prune(
        args, out, err, ask, [i.session for i in old], lambda s: delete_pool(client, s), where
    )


def _prune(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    ask: Callable[[str], str],
    sessions: list[str],
    remove: Callable[[str], Any],
    where: str,
) -> int:
    if not sessions:
        _report(args, out, [], empty=f"no pool idle for {_age(args.older_than)} at {where}")
        return 0
    if args.dry_run:
        _report(args, out, [{"session": s, "action": "would delete"} for s in sessions])
        return 0
    prompt = (
        f"delete {len(sessions)} pools at {where} ({', '.join(sessions[:5])}"
        f"{', ...' if len(sessions) > 5 else ''})? Type yes to confirm: "
    )
    if not _confirmed(prompt, "yes", args, ask):
        print("nothing deleted", file=err)
        return 1
    results = []
    for session in sessions:
        results.append({"session": session, "action": "deleted", "detail": remove(session)})
    _report(args, out, results)
    return 0


def _report(
    args: argparse.Namespace, out: TextIO, results: list[dict[str, Any]], empty: str = ""
) -> None:
    if args.json:
        json.dump(results, out, indent=2)
        print(file=out)
    elif not results and empty:
        print(empty, file=out)
    else:
        for result in results:
            detail = {k: v for k, v in result.items() if k not in ("session", "action")}
            extra = f" ({', '.join(f'{k}: {v}' for k, v in detail.items())})" if detail else ""
            print(f"{result['action']} {result['session']}{extra}", file=out)


def _check_session(session: str) -> None:
    from curriculum.config import SESSION_ID_PATTERN

    if not SESSION_ID_PATTERN.fullmatch(session):
        raise ConfigError(f"invalid session id {session!r}: 1-100 letters, digits, '.', '_' or '-'")


# -- /dev/shm -----------------------------------------------------------------------------------


def _run_shm(args: argparse.Namespace, out: TextIO, err: TextIO, ask: Callable[[str], str]) -> int:
    from curriculum.shm_admin import clean_segments, list_segments

    if args.pools_command == "list":
        infos = list_segments()
        if args.json:
            json.dump([i.to_dict() for i in infos], out, indent=2)
            print(file=out)
        elif not infos:
            print("no /dev/shm pools", file=out)
        else:
            rows = [
                [
                    i.session,
                    i.state,
                    "-" if i.size is None else f"{i.size / 1024:.1f} KiB",
                    "-" if i.capacity is None else str(i.capacity),
                    "-" if i.creator_pid is None else f"{i.creator_pid} ({i.creator_state})",
                    {True: "yes", False: "no", None: "?"}[i.in_use],
                ]
                for i in infos
            ]
            _table(["session", "state", "size", "slots", "creator", "in use"], rows, out)
        return 0
    if args.pools_command == "delete":
        _check_session(args.session)
        if not list_segments(args.session):
            print(f"curriculum pools: no /dev/shm pool {args.session!r}", file=err)
            return 2
        prompt = (
            f"delete the /dev/shm pool {args.session!r} (only if orphaned and unused)? "
            "Type its session id to confirm: "
        )
        if not _confirmed(prompt, args.session, args, ask):
            print("not deleted", file=err)
            return 1
        report = clean_segments(session=args.session)
        results = [
            {"session": a.segment.session, "action": a.action, "reason": a.reason}
            for a in report.actions
        ]
        _report(args, out, results)
        return 0 if report.removed else 2
    now = time.time()
    old = []
    for info in list_segments():
        try:
            idle = now - os.stat(info.path).st_mtime
        except OSError:
            continue
        if info.state == "orphaned" and idle >= args.older_than:
            old.append(info.session)

    def remove(session: str) -> str:
        report = clean_segments(session=session)
        return "; ".join(f"{a.action}: {a.reason}" for a in report.actions) or "gone"

    return _prune(args, out, err, ask, old, remove, "/dev/shm")
