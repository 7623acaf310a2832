"""Warnings (each once per process) when priorities and the algorithm do not go together.

A priority reported to an algorithm that does not read priorities is still stored in the task's
row (``priority``, ``n_priorities``: visible in checkpoints), but it steers nothing; outcomes
reported without a priority to Prioritized Level Replay with ``score_function="priority"``
leave their task unseen (explored again, never replayed). Both are said once, in plain words.
"""

from __future__ import annotations

import logging

from curriculum.algorithm_config import PoolAlgorithmConfig

logger = logging.getLogger("curriculum")
_said: set[str] = set()


def note_priority(config: PoolAlgorithmConfig, given: bool) -> None:
    """Warn once when ``given`` (a priority came with an outcome) does not suit ``config``."""
    uses = config.uses_priorities()
    if given and not uses and "unused" not in _said:
        _said.add("unused")
        logger.warning(
            "a priority was reported with an outcome, but %s does not read priorities: it is "
            "stored with the task and steers nothing. Use PrioritizedLevelReplayConfig("
            "score_function='priority') to sample by it (this is said once)",
            _describe(config),
        )
    elif not given and uses and "missing" not in _said:
        _said.add("missing")
        logger.warning(
            "an outcome came without a priority, but PrioritizedLevelReplayConfig("
            "score_function='priority') scores tasks by the priorities reported with outcomes: "
            "a task without one stays unseen (explored, never replayed). Pass priority= to "
            "update_task_performance, or choose an outcome-based score_function (this is said "
            "once)"
        )


def _describe(config: PoolAlgorithmConfig) -> str:
    name = f"the {getattr(config, 'type', type(config).__name__)} algorithm"
    function = getattr(config, "score_function", None)
    return f"{name} with score_function={function!r}" if function else name
