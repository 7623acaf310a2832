"""The pool's Lua scripts (``backends/lua``): loading and registering them on a client."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.commands.core import Script

LUA_DIR = Path(__file__).parent / "lua"
SCRIPT_NAMES = (
    "attach",
    "reserve_sequence",
    "intern_label",
    "create_task",
    "replace_task",
    "record",
    "end_epoch",
    "import_state",
    "update_stage",
    "update_ranges",
    "destroy",
)
# Scripts that run long on large pools (attach creates every free slot, import_state writes
# every row): run on a client with a longer timeout than the hot path's.
SLOW_SCRIPTS = frozenset({"attach", "import_state", "destroy"})


def load_script(name: str) -> str:
    """The source of a pool script, with the shared helpers in front."""
    return (LUA_DIR / "_lib.lua").read_text() + "\n" + (LUA_DIR / f"{name}.lua").read_text()


def register_scripts(client: redis.Redis) -> dict[str, Script]:
    """Every pool script registered on ``client`` (EVALSHA, loaded again after NOSCRIPT)."""
    return {name: client.register_script(load_script(name)) for name in SCRIPT_NAMES}
