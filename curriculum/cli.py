"""The ``curriculum`` command."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curriculum", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="simulated multi-worker training on one shared pool (no server needed)"
    )
    demo.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    demo.add_argument(
        "--episodes", type=int, default=20_000, help="episodes in all (default 20000)"
    )
    demo.add_argument(
        "--backend-url", default=None, help="pool backend; default: /dev/shm on this host"
    )
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``curriculum`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from curriculum.demo import main as demo_main

        return demo_main(args.workers, args.episodes, args.backend_url, args.seed)
    return 2


if __name__ == "__main__":
    sys.exit(main())
