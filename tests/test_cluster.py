"""Redis Cluster: pools spread over the nodes, and a pool whose slot moves to another node.

The conformance suites run on the cluster through the ``backend_url`` / ``process_backend_url``
fixtures (param ``cluster``); these tests cover what only a cluster has: several pools whose
sessions hash to different nodes, used at once from several processes, and a slot migration
under load (MOVED and ASK redirections, followed by the client).
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import redis
from conftest import make_config, unique_session
from workers import open_handle, record, run_workers

from backends.redis_backend import connect, session_keys
from curriculum import Curriculum


def _node_of(client: Any, key: str) -> Any:
    return client.get_node_from_key(key)


def _sessions_on_distinct_nodes(client: Any, count: int) -> list[str]:
    chosen: dict[str, str] = {}
    while len(chosen) < count:
        session = unique_session("cl")
        node = _node_of(client, session_keys(session)[0]).name
        chosen.setdefault(node, session)
    return list(chosen.values())


def _play_pools(index: int, handles: list[bytes], episodes: int) -> list[int]:
    curricula = [open_handle(handle) for handle in handles]
    for _ in range(episodes):
        for curriculum in curricula:
            record(curriculum, 1, score=0.25 + 0.5 * (index % 2))
    for curriculum in curricula:
        curriculum.close()
    return [episodes] * len(curricula)


def test_pools_on_different_nodes_serve_several_processes(cluster_url: str) -> None:
    client = connect(cluster_url)
    sessions = _sessions_on_distinct_nodes(client, 3)
    curricula = [
        Curriculum(
            make_config(
                num_active_tasks=16, write_batch_size=8, lp_backend_url=cluster_url, lp_session_id=s
            )
        )
        for s in sessions
    ]
    try:
        handles = [pickle.dumps(c) for c in curricula]
        reported = run_workers(_play_pools, [(handles, 150)] * 3)
        for position, curriculum in enumerate(curricula):
            stats = curriculum.stats()
            assert stats["curriculum/num_completed"] == sum(r[position] for r in reported)
            assert stats["curriculum/num_scheduled"] == stats["curriculum/num_completed"]
        nodes = {_node_of(client, session_keys(s)[0]).name for s in sessions}
        assert len(nodes) == 3  # the pools really live on three nodes
    finally:
        for curriculum in curricula:
            curriculum.destroy()
        client.close()


def _migrate_slot(cluster_url: str, key: str) -> tuple[str, str]:
    """Move the slot of ``key`` (all its keys) to another master; (source, target) names."""
    client = connect(cluster_url)
    try:
        slot = client.keyslot(key)
        source = client.get_node_from_key(key)
        target = next(n for n in client.get_primaries() if n.name != source.name)
        src = redis.Redis(host=source.host, port=source.port)
        dst = redis.Redis(host=target.host, port=target.port)
        try:
            src_id = src.execute_command("CLUSTER MYID").decode()
            dst_id = dst.execute_command("CLUSTER MYID").decode()
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            while True:
                keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
            for node in client.get_primaries():
                peer = redis.Redis(host=node.host, port=node.port)
                try:
                    peer.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
                finally:
                    peer.close()
        finally:
            src.close()
            dst.close()
        return source.name, target.name
    finally:
        client.close()


def _play_for(index: int, handle: bytes, seconds: float) -> int:
    curriculum = open_handle(handle)
    played = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        record(curriculum, 1, score=0.75)
        played += 1
    curriculum.close()
    return played


def test_a_pool_keeps_every_outcome_while_its_slot_moves(cluster_url: str) -> None:
    session = unique_session("moving")
    config = make_config(
        num_active_tasks=16, write_batch_size=4, lp_backend_url=cluster_url, lp_session_id=session
    )
    curriculum = Curriculum(config)
    try:
        record(curriculum, 50)
        moved: list[tuple[str, str]] = []

        def migrate_once() -> None:
            if not moved:
                time.sleep(0.3)  # the workers are under way
                moved.append(_migrate_slot(cluster_url, session_keys(session)[0]))

        handle = pickle.dumps(curriculum)
        played = run_workers(_play_for, [(handle, 2.0)] * 2, while_waiting=migrate_once)
        record(curriculum, 50)  # this process's client learns the new owner from MOVED
        source, target = moved[0]
        client = connect(cluster_url)
        try:
            assert _node_of(client, session_keys(session)[0]).name == target != source
        finally:
            client.close()
        stats = curriculum.stats()
        assert stats["curriculum/num_completed"] == 100 + sum(played)
        assert stats["curriculum/num_scheduled"] == stats["curriculum/num_completed"]
    finally:
        curriculum.destroy()
