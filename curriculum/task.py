"""The task handed to an environment: an id, plus its config rebuilt from the id on demand."""

from __future__ import annotations

from typing import Any

from curriculum.generators import GeneratedTask, TaskGenerator


class CurriculumTask:
    """A task drawn from the pool.

    Only the id travels through the pool; the env config, label and bucket values are rebuilt
    from the id by the task generator the first time they are asked for (in any process).
    ``stage`` is the index of the stage the task belongs to in a staged curriculum (else 0).
    """

    __slots__ = ("_generated", "_generator", "slot", "stage", "task_id")

    def __init__(self, task_id: int, slot: int, generator: TaskGenerator, stage: int = 0) -> None:
        """A task with id ``task_id`` in pool slot ``slot``."""
        self.task_id = task_id
        self.slot = slot
        self.stage = stage
        self._generator = generator
        self._generated: GeneratedTask | None = None

    def _generate(self) -> GeneratedTask:
        if self._generated is None:
            self._generated = self._generator.generate(self.task_id)
        return self._generated

    def get_env_cfg(self) -> Any:
        """The task's env config (a dict or pydantic model, as the generator's template)."""
        return self._generate().env_cfg

    def get_label(self) -> str:
        """The task's label, e.g. ``"nav|difficulty:0.5|size:17"``."""
        return self._generate().label

    def get_bucket_values(self) -> dict[str, Any]:
        """The bucket values chosen for this task, by dotted path."""
        return dict(self._generate().bucket_values)

    def __repr__(self) -> str:
        return f"CurriculumTask(task_id={self.task_id}, slot={self.slot})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CurriculumTask) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)
