"""Writes sent ahead (their reply read at the next call) are applied exactly once."""

from __future__ import annotations

import pytest
import redis
from conftest import make_config

from curriculum import Curriculum
from curriculum.errors import PoolNotFoundError


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


def test_immediate_outcomes_are_sent_ahead_and_confirmed(immediate) -> None:
    task = immediate.get_task()
    immediate.update_task_performance(task.task_id, 0.5)
    assert immediate.backend._inflight is not None  # sent, reply not read yet
    assert _completed(immediate) == 1  # any later call confirms it first
    assert immediate.backend._inflight is None


def test_a_lost_reply_after_the_server_applied_the_write_counts_once(immediate, monkeypatch):
    task = immediate.get_task()
    immediate.update_task_performance(task.task_id, 0.5)
    connection = immediate.backend._ahead
    real_read = connection.read_response

    def read_then_fail(*args, **kwargs):
        monkeypatch.setattr(connection, "read_response", real_read)  # once
        real_read(*args, **kwargs)  # the server ran the script ...
        raise redis.ConnectionError("connection lost")  # ... but the reply never arrived

    monkeypatch.setattr(connection, "read_response", read_then_fail)
    immediate.update_task_performance(task.task_id, 0.25)  # confirms the first: sent again
    assert _completed(immediate) == 2
    assert immediate.backend.snapshot().rows["n_outcomes"][task.slot] == 2


def test_a_write_that_could_not_be_sent_is_sent_at_the_next_call(immediate, monkeypatch) -> None:
    task = immediate.get_task()
    immediate.update_task_performance(task.task_id, 0.5)
    assert _completed(immediate) == 1
    connection = immediate.backend._ahead
    real_send = connection.send_command

    def refuse(*args, **kwargs):
        monkeypatch.setattr(connection, "send_command", real_send)  # once
        raise redis.ConnectionError("cannot send")

    monkeypatch.setattr(connection, "send_command", refuse)
    immediate.update_task_performance(task.task_id, 0.5)
    assert immediate.backend._inflight is not None and immediate.backend._inflight[1] is False
    assert _completed(immediate) == 2


def test_a_write_sent_ahead_to_a_destroyed_pool_raises_at_the_next_call(redis_url) -> None:
    immediate = Curriculum(
        make_config(
            num_active_tasks=8, write_batch_size=1, lp_backend_url=redis_url, on_pool_lost="raise"
        )
    )
    task = immediate.get_task()
    immediate.flush()
    other = make_config(
        num_active_tasks=8,
        write_batch_size=1,
        lp_backend_url=immediate.config.algorithm_config.backend_url,
        lp_session_id=immediate.session_id,
    )
    with Curriculum(other) as destroyer:
        destroyer.destroy()
    immediate.update_task_performance(task.task_id, 0.5)  # sent ahead: the error comes next
    with pytest.raises(PoolNotFoundError):
        immediate.flush()
    immediate.close()


def test_a_write_sent_ahead_to_a_destroyed_pool_recreates_it_by_default(immediate) -> None:
    task = immediate.get_task()
    immediate.flush()
    other = make_config(
        num_active_tasks=8,
        write_batch_size=1,
        lp_backend_url=immediate.config.algorithm_config.backend_url,
        lp_session_id=immediate.session_id,
    )
    with Curriculum(other) as destroyer:
        destroyer.destroy()
    immediate.update_task_performance(task.task_id, 0.5)  # sent ahead to the destroyed pool
    immediate.flush()  # the pool is re-created empty; the outcome meant for the old one dropped
    assert _completed(immediate) == 0
    assert immediate.health()["health/dropped_outcomes"] == 1
    immediate.update_task_performance(task.task_id, 0.5)  # a task of the lost pool: dropped
    assert immediate.health()["health/dropped_outcomes"] == 2
    fresh = immediate.get_task()
    immediate.update_task_performance(fresh.task_id, 1.0)
    assert _completed(immediate) == 1
