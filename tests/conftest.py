"""Shared test fixtures: configs with unique sessions, and pools that are always closed."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis_support

from backends.redis_backend import REGISTRY_KEY, connect, session_keys
from backends.shared_memory import segment_path
from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    DiscreteRandomConfig,
    LearningProgressConfig,
    PrioritizedLevelReplayConfig,
    SingleTaskGenerator,
    Span,
    TaskGeneratorSet,
)


def unique_session(prefix: str = "test") -> str:
    """A session id no other test (of this run or of a concurrent one) uses."""
    return f"{prefix}-{redis_support.RUN_TOKEN}-{uuid.uuid4().hex[:12]}"


def remove_pool(session_id: str, backend_url: str | None = None) -> None:
    """Remove a session's pool, if any: its /dev/shm segment (``backend_url`` None), else every
    key of the session on the Redis at ``backend_url`` and its registry entry."""
    if backend_url is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment_path(session_id))
        return
    client = connect(backend_url)
    try:
        client.delete(*session_keys(session_id))
        client.srem(REGISTRY_KEY, session_id)
    finally:
        client.close()


def nav_generator(size: Span | None = None) -> BucketedTaskGenerator.Config:
    """The generator of the README example: labels like ``nav|difficulty:0.5|size:17``."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "nav", "difficulty": 0.0}),
        buckets={"difficulty": [0.1, 0.5, 0.9], "size": size or Span(8, 32)},
    )


def kinds_generator(
    weights: tuple[float, float, float] = (1.0, 1.0, 2.0),
) -> TaskGeneratorSet.Config:
    """Impossible, mastered and learnable tasks, by label."""
    return TaskGeneratorSet.Config(
        generator_configs=[
            SingleTaskGenerator.Config(env={"label": "impossible"}),
            SingleTaskGenerator.Config(env={"label": "mastered"}),
            BucketedTaskGenerator.Config(
                child_generator_config=SingleTaskGenerator.Config(env={"label": "learnable"}),
                buckets={"variant": Span(0, 1_000_000)},
            ),
        ],
        weights=list(weights),
    )


# -- backends -----------------------------------------------------------------------------------
# Tests that take ``backend_url`` run on every backend: the /dev/shm pool, Redis through
# fakeredis (fast, in-process) and a real Redis. Multi-process tests take ``process_backend_url``
# (fakeredis cannot be shared between processes). On CI a real Redis is required.


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: $CURRICULUM_TEST_REDIS_URL, the one on 6379, or one spawned for the run."""
    url = os.environ.get("CURRICULUM_TEST_REDIS_URL", redis_support.DEFAULT_URL)
    if redis_support.answers(url):
        yield url
        return
    try:
        with redis_support.spawned_redis() as (spawned, _):
            yield spawned
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the Redis tests must run on CI, but no Redis is available: {exc}")
        pytest.skip(f"no Redis available: {exc}")


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A 3-master Redis Cluster of our own, for the whole run."""
    try:
        with redis_support.spawned_cluster() as url:
            yield url
    except (RuntimeError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the Redis Cluster tests must run on CI, but no cluster started: {exc}")
        pytest.skip(f"no Redis Cluster available: {exc}")


def _backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "shm":
        yield None
    elif request.param == "fakeredis":
        redis_support.FAKE.reset()
        yield "fakeredis://"
    else:
        url = request.getfixturevalue("cluster_url" if request.param == "cluster" else "redis_url")
        before = redis_support.registered_sessions(url)
        yield url
        redis_support.remove_sessions_created_since(url, before)


@pytest.fixture(params=["shm", "fakeredis", "redis", "cluster"])
def backend_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Where the test's pools live: None (/dev/shm) or a Redis URL."""
    yield from _backend(request)


@pytest.fixture(params=["shm", "redis", "cluster"])
def process_backend_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Backends that several processes can share."""
    yield from _backend(request)


def make_config(*, algorithm: str = "lp", generator: Any = None, **fields: Any) -> CurriculumConfig:
    """A config with a fresh session; ``algorithm``: "lp", "plr" or "random"; ``lp_*`` keyword
    arguments go to the algorithm config."""
    algo_fields = {k[3:]: v for k, v in fields.items() if k.startswith("lp_")}
    rest = {k: v for k, v in fields.items() if not k.startswith("lp_")}
    algo_fields.setdefault("session_id", unique_session())
    kinds = {
        "lp": LearningProgressConfig,
        "plr": PrioritizedLevelReplayConfig,
        "random": DiscreteRandomConfig,
        "discrete_random": DiscreteRandomConfig,
    }
    algorithm_config = kinds[algorithm](**algo_fields)
    rest.setdefault("num_active_tasks", 32)
    return CurriculumConfig(
        task_generator=generator or nav_generator(), algorithm_config=algorithm_config, **rest
    )


@pytest.fixture
def curricula(backend_url: str | None) -> Iterator[Callable[..., Curriculum]]:
    """Build curricula with :func:`make_config`'s arguments on the test's backend.

    All are closed after the test (and their Redis pools removed).
    """
    opened: list[Curriculum] = []

    def build(config: CurriculumConfig | None = None, **fields: Any) -> Curriculum:
        fields.setdefault("lp_backend_url", backend_url)
        curriculum = Curriculum(config or make_config(**fields))
        opened.append(curriculum)
        return curriculum

    yield build
    for curriculum in opened:
        curriculum.close()


def pool_figures(stats: dict[str, float]) -> dict[str, float]:
    """The pool's keys of ``stats``: without the asking process's own ``health/`` figures."""
    return {k: v for k, v in stats.items() if not k.startswith("health/")}
