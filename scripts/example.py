"""The README's API example, runnable: ``python scripts/example.py``."""

from __future__ import annotations

import random

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
)


def stats_key_order(key: str) -> tuple[tuple[int, float, str], ...]:
    """Sort key for stats keys: numeric parts by value (``slice/size/8`` before ``.../10``)."""
    parts = []
    for part in key.split("/"):
        try:
            parts.append((0, float(part), ""))
        except ValueError:
            parts.append((1, 0.0, part))
    return tuple(parts)


def main(session_id: str = "example") -> None:
    cfg = CurriculumConfig(
        task_generator=BucketedTaskGenerator.Config(
            child_generator_config=SingleTaskGenerator.Config(
                env={"label": "nav", "difficulty": 0.0}
            ),
            buckets={"difficulty": [0.1, 0.5, 0.9], "size": Span(8, 32)},
        ),
        num_active_tasks=256,
        algorithm_config=LearningProgressConfig(session_id=session_id),
        seed=0,
    )
    rng = random.Random(0)
    with Curriculum(cfg) as curriculum:
        for _ in range(5_000):
            task = curriculum.get_task()
            difficulty = task.get_env_cfg()["difficulty"]
            curriculum.update_task_performance(task.task_id, float(rng.random() > difficulty))
        print(task, task.get_label(), task.get_env_cfg())
        stats = curriculum.stats()
        keys = sorted((k for k in stats if not k.startswith("label/")), key=stats_key_order)
        width = max(map(len, keys))
        for key in keys:
            print(f"{key:{width}} {stats[key]:.4g}")
        state = curriculum.get_state()
    print("checkpoint slots:", len(state["rows"]["task_id"]))


if __name__ == "__main__":
    main()
