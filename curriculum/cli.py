"""The ``curriculum`` command (help texts are plain text: argparse prints them as they are)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

DESCRIPTION = (
    "A curriculum coordinator for reinforcement-learning training: one pool of tasks shared by "
    "every worker, sampled by learning progress. This command runs a demo and inspects or "
    "cleans up pools."
)
DEMO_DESCRIPTION = (
    "Simulated training: worker processes share one curriculum pool (in /dev/shm, or in Redis "
    "with --backend-url) and train one simulated student on graded difficulties 0.1-0.9 plus a "
    "few impossible and trivial tasks. The curriculum samples tasks by learning progress. At the "
    "end it prints a table per label (samples and their share, mean score, learning progress "
    "over the run and at the end, evictions) and the student's mastery (mean success over the "
    "difficulties), runs the same budget with uniform sampling as the baseline, and writes a "
    "PNG: the sampling share by difficulty in windows of 1/20 of the run, beside the student's "
    "success by difficulty and its mastery against the baseline's. The demo's pools are "
    "removed at the end. A progress bar (tqdm) and the PNG (matplotlib) need the demo extra: "
    "pip install 'curriculum-pool[demo]'."
)


def _version() -> str:
    try:
        return version("curriculum-pool")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curriculum", description=DESCRIPTION)
    parser.add_argument(
        "--version", action="version", version=f"curriculum {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="simulated multi-worker training on one shared pool (no server needed)",
        description=DEMO_DESCRIPTION,
    )
    demo.add_argument(
        "--workers",
        type=_positive_int,
        default=2,
        help="worker processes sharing the pool (default 2)",
    )
    demo.add_argument(
        "--episodes",
        type=_positive_int,
        default=20_000,
        help="episodes in all, split between the workers (default 20000)",
    )
    demo.add_argument(
        "--backend-url",
        default=None,
        metavar="URL",
        help="where the pool lives: a redis:// URL; default: /dev/shm on this host",
    )
    demo.add_argument(
        "--seed",
        type=_count,
        default=0,
        help="seeds the pool's task ids and the workers' episodes (default 0)",
    )
    demo.add_argument(
        "--output",
        default="curriculum-demo.png",
        metavar="PNG",
        help="where to write the PNG (default curriculum-demo.png; '' for none)",
    )
    demo.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the uniform-sampling baseline run (and its line in the PNG)",
    )
    _add_inspect(commands)
    _add_shm(commands)
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="read-only view of pools in Redis: sessions, summary, top tasks, labels",
        description="Show pools in Redis without changing them (read commands only).",
    )
    inspect.add_argument("--url", required=True, help="Redis URL (redis://, rediss://, unix://)")
    inspect.add_argument("--session", default=None, help="the pool's session id")
    inspect.add_argument(
        "--view",
        choices=("summary", "top", "labels", "sessions"),
        default=None,
        help="what to show (default: summary with --session, else sessions)",
    )
    inspect.add_argument(
        "--top", type=_count, default=10, metavar="N", help="tasks in the top view (0: all)"
    )
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.add_argument(
        "--watch",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS until Ctrl-C",
    )
    inspect.add_argument("--iterations", type=_count, default=None, help=argparse.SUPPRESS)


def _add_shm(commands: argparse._SubParsersAction) -> None:
    shm = commands.add_parser(
        "shm",
        help="list /dev/shm pools, or remove the orphaned ones (creator gone, unused)",
        description="List the /dev/shm pool segments of this host, or remove orphaned ones.",
    )
    actions = shm.add_subparsers(dest="shm_command", required=True)
    listing = actions.add_parser(
        "list",
        help="every curriculum.* segment: state, size, creator, lock, users (read-only)",
        description="Show every curriculum.* file of the shm directory; changes nothing.",
    )
    clean = actions.add_parser(
        "clean",
        help="remove orphaned pools no process uses (never live pools or foreign files)",
        description=(
            "Remove pools of this library whose creator is gone and that no process maps, "
            "holds open or locks; everything else is kept and reported. Exit code 0."
        ),
    )
    clean.add_argument("--dry-run", action="store_true", help="report, remove nothing")
    for sub in (listing, clean):
        sub.add_argument("--session", default=None, help="only this session's segment")
        sub.add_argument("--json", action="store_true", help="print JSON")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``curriculum`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from curriculum.demo import main as demo_main

        return demo_main(
            args.workers,
            args.episodes,
            args.backend_url,
            args.seed,
            output=args.output or None,
            compare=not args.no_compare,
        )
    if args.command == "inspect":
        from curriculum.inspect import run

        return run(
            args.url,
            session=args.session,
            view=args.view,
            top=args.top,
            as_json=args.json,
            watch=args.watch,
            iterations=args.iterations,
        )
    if args.command == "shm":
        from curriculum.shm_admin_cli import run as shm_run

        return shm_run(
            args.shm_command,
            session=args.session,
            dry_run=getattr(args, "dry_run", False),
            as_json=args.json,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
