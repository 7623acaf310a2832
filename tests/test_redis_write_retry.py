"""On Redis, a write that failed is sent again by the write queue, with its id, and counts once."""

from __future__ import annotations

import contextlib

import pytest
from conftest import make_config

from curriculum import Curriculum
from curriculum.errors import BackendUnavailableError, PoolNotFoundError


@pytest.fixture
def immediate(redis_url: str):
    curriculum = Curriculum(
        make_config(num_active_tasks=8, write_batch_size=1, lp_backend_url=redis_url)
    )
    yield curriculum
    if not curriculum._closed:
        curriculum.destroy()


def _completed(curriculum: Curriculum) -> float:
    return curriculum.stats()["curriculum/num_completed"]


def _fail_next_record(curriculum: Curriculum, monkeypatch, *, applied: bool) -> None:
    """The next record write fails as a lost connection would: after the server ran it
    (``applied``) or before it reached the server; whether it was sent waiting for its reply
    (a script call) or ahead of it (the hot path's lone batch)."""
    backend = curriculum.backend
    real = {name: getattr(backend, name) for name in ("_call", "record_send", "record_receive")}
    failed: list[bool] = []

    def once() -> bool:
        if failed:
            return False
        failed.append(True)
        for name, method in real.items():
            monkeypatch.setattr(backend, name, method)
        return True

    def call(name, *args):  # type: ignore[no-untyped-def]
        if name != "record" or not once():
            return real["_call"](name, *args)
        if applied:
            real["_call"](name, *args)  # the server ran the script, the reply never came
        raise BackendUnavailableError("Redis connection lost")

    def send(batch):  # type: ignore[no-untyped-def]
        if applied:
            return real["record_send"](batch)  # fails when its reply is read
        once()
        raise BackendUnavailableError("Redis connection lost")

    def receive():  # type: ignore[no-untyped-def]
        reply = real["record_receive"]()
        if once():
            raise BackendUnavailableError("Redis connection lost")  # the reply never came
        return reply

    monkeypatch.setattr(backend, "_call", call)
    monkeypatch.setattr(backend, "record_send", send)
    monkeypatch.setattr(backend, "record_receive", receive)


@pytest.mark.parametrize("applied", [True, False], ids=["reply-lost", "not-sent"])
def test_a_failed_write_is_sent_again_and_counts_once(immediate, monkeypatch, applied) -> None:
    task = immediate.get_task()
    immediate.update_task_performance(task.task_id, 0.5)
    assert _completed(immediate) == 1
    _fail_next_record(immediate, monkeypatch, applied=applied)
    immediate.update_task_performance(task.task_id, 0.25)  # fails: stays queued, no raise
    assert immediate.health()["health/pending_outcomes"] == 1
    for _ in range(2):  # a write sent ahead of its reply fails when the reply is read
        with contextlib.suppress(BackendUnavailableError):
            immediate.flush()  # sent again, once
    assert immediate.health()["health/pending_outcomes"] == 0
    assert _completed(immediate) == 2
    assert immediate.backend.snapshot().rows["n_outcomes"][task.slot] == 2
    assert immediate.health()["health/write_retries"] == 1


def _destroy_behind(immediate: Curriculum) -> None:
    other = make_config(
        num_active_tasks=8,
        write_batch_size=1,
        lp_backend_url=immediate.config.algorithm_config.backend_url,
        lp_session_id=immediate.session_id,
    )
    with Curriculum(other) as destroyer:
        destroyer.destroy()


def test_a_write_to_a_destroyed_pool_raises_in_raise_mode(redis_url) -> None:
    immediate = Curriculum(
        make_config(
            num_active_tasks=8, write_batch_size=1, lp_backend_url=redis_url, on_pool_lost="raise"
        )
    )
    task = immediate.get_task()
    immediate.flush()
    _destroy_behind(immediate)
    with pytest.raises(PoolNotFoundError):
        immediate.update_task_performance(task.task_id, 0.5)
    immediate.close()


def test_a_write_to_a_destroyed_pool_recreates_it_by_default(immediate) -> None:
    task = immediate.get_task()
    immediate.flush()
    _destroy_behind(immediate)
    immediate.update_task_performance(task.task_id, 0.5)  # the pool is re-created empty
    assert _completed(immediate) == 0  # the outcome meant for the old one is dropped
    assert immediate.health()["health/dropped_outcomes"] == 1
    immediate.update_task_performance(task.task_id, 0.5)  # a task of the lost pool: dropped
    assert immediate.health()["health/dropped_outcomes"] == 2
    fresh = immediate.get_task()
    immediate.update_task_performance(fresh.task_id, 1.0)
    assert _completed(immediate) == 1
