"""The Curriculum facade in one process: sampling, recording, eviction, stats, bad input."""

from __future__ import annotations

import math
import pickle
from collections import Counter

import numpy as np
import pytest
from conftest import kinds_generator, make_config

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    CurriculumTask,
    LearningProgressConfig,
    SingleTaskGenerator,
)
from curriculum.errors import (
    ConfigError,
    CurriculumError,
    PoolClosedError,
    PoolNotFoundError,
    ScoreError,
    UnknownTaskError,
)
from curriculum.slices import bucket_values
from curriculum.stats import gini


def test_readme_example_runs(curricula) -> None:
    curriculum = curricula(num_active_tasks=256)
    task = curriculum.get_task()
    assert isinstance(task, CurriculumTask)
    env = task.get_env_cfg()
    assert env["difficulty"] in (0.1, 0.5, 0.9) and 8 <= env["size"] <= 32
    assert task.get_label() == f"nav|difficulty:{env['difficulty']:g}|size:{env['size']}"
    assert task.get_bucket_values() == {"difficulty": env["difficulty"], "size": env["size"]}
    curriculum.update_task_performance(task.task_id, 0.75)
    stats = curriculum.stats()
    assert stats["curriculum/num_completed"] == 1
    assert stats[f"label/{task.get_label()}/completions"] == 1
    assert all(isinstance(v, float) for v in stats.values())


def test_config_make_builds_a_curriculum(backend_url) -> None:
    with make_config(lp_backend_url=backend_url).make() as curriculum:
        assert isinstance(curriculum, Curriculum)
        assert curriculum.get_task().task_id >= 0


def test_pool_fills_before_sampling_then_stays_full(curricula) -> None:
    curriculum = curricula(num_active_tasks=16)
    first = [curriculum.get_task() for _ in range(16)]
    assert len({t.task_id for t in first}) == 16
    assert len({t.slot for t in first}) == 16
    for _ in range(100):
        curriculum.get_task()
    stats = curriculum.stats()
    assert stats["curriculum/num_active_tasks"] == 16
    assert stats["curriculum/num_scheduled"] == 116


def test_same_seed_gives_same_task_ids(curricula) -> None:
    a = curricula(seed=7)
    b = curricula(seed=7)
    c = curricula(seed=8)
    ids_a = [a.get_task().task_id for _ in range(10)]
    assert ids_a == [b.get_task().task_id for _ in range(10)]
    assert ids_a != [c.get_task().task_id for _ in range(10)]


def _simulate(curriculum: Curriculum, episodes: int, seed: int = 0) -> Counter[str]:
    """A student: impossible tasks always fail, mastered always succeed, learnable ones improve."""
    rng = np.random.default_rng(seed)
    practice: Counter[int] = Counter()
    samples: Counter[str] = Counter()
    for episode in range(episodes):
        task = curriculum.get_task()
        kind = task.get_label().split("|")[0]
        if episode >= episodes // 2:
            samples[kind] += 1
        practice[task.task_id] += 1
        if kind == "impossible":
            score = 0.0
        elif kind == "mastered":
            score = 1.0
        else:
            score = float(rng.random() < min(1.0, practice[task.task_id] / 40))
        curriculum.update_task_performance(task.task_id, score)
    return samples


def test_impossible_and_mastered_tasks_end_with_low_sampling_probability(curricula) -> None:
    # a simulated loop far faster than real episodes: refresh by outcome count, as real ones do
    curriculum = curricula(generator=kinds_generator(), num_active_tasks=48, refresh_cpu_share=1.0)
    samples = _simulate(curriculum, 6000)
    # half of what the generator makes is learnable; the curriculum spends most episodes there
    assert samples["learnable"] / sum(samples.values()) > 0.75
    view = curriculum._session.view(fresh=True)
    names = view.snapshot.label_names
    kinds = np.array([names[view.label_id(slot)].split("|")[0] for slot in view.active])
    warm = view.snapshot.rows["n_outcomes"][view.active] >= 3
    p = view.probabilities
    learnable = p[warm & (kinds == "learnable")].mean()
    for kind in ("impossible", "mastered"):
        chosen = warm & (kinds == kind)
        assert chosen.any()
        assert p[chosen].max() < learnable, kind


def test_discrete_random_samples_uniformly_and_never_evicts(curricula) -> None:
    curriculum = curricula(algorithm="random", generator=kinds_generator(), num_active_tasks=8)
    counts: Counter[int] = Counter()
    for _ in range(8000):
        task = curriculum.get_task()
        counts[task.task_id] += 1
        curriculum.update_task_performance(task.task_id, 0.0)
    stats = curriculum.stats()
    assert stats["curriculum/num_evicted"] == 0
    assert len(counts) == 8
    assert max(counts.values()) < 1.15 * min(counts.values())


def test_eviction_churn_is_bounded_by_presentations(curricula) -> None:
    curriculum = curricula(
        num_active_tasks=16, lp_min_presentations_for_eviction=10, write_batch_size=1
    )
    rng = np.random.default_rng(3)
    outcomes: Counter[int] = Counter()
    active: set[int] = set()
    for _ in range(4000):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, float(rng.random()))
        outcomes[task.task_id] += 1
        active.add(task.task_id)
    stats = curriculum.stats()
    assert 0 < stats["curriculum/num_evicted"] <= stats["curriculum/num_completed"] / 10
    now_active = set(curriculum.backend.snapshot().rows["task_id"].tolist())
    evicted = active - now_active
    assert len(evicted) == stats["curriculum/num_evicted"]
    assert min(outcomes[t] for t in evicted) >= 10  # nobody evicted before 10 presentations


def test_epoch_counters_reset_only_at_epoch_end(curricula) -> None:
    curriculum = curricula(num_active_tasks=8)
    for _ in range(50):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, 0.5)
    for _ in range(3):  # stats never reset anything
        assert curriculum.stats()["epoch/num_completed"] == 50
    before = curriculum.on_epoch_end()
    assert before["epoch/num_completed"] == 50 and before["epoch/num_scheduled"] == 50
    stats = curriculum.stats()
    assert stats["epoch/num_completed"] == 0
    assert stats["curriculum/num_completed"] == 50
    assert stats["curriculum/epoch"] == 1


def test_eviction_counters_accumulate_over_episodes_until_the_epoch_ends(curricula) -> None:
    curriculum = curricula(num_active_tasks=8, lp_min_presentations_for_eviction=3)
    rng = np.random.default_rng(5)
    evictions_seen = []
    for _ in range(400):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, float(rng.random()))
        evictions_seen.append(curriculum.stats()["epoch/num_evicted"])
    assert evictions_seen[-1] > 0
    assert evictions_seen == sorted(evictions_seen)  # never reset by an episode
    assert curriculum.on_epoch_end()["epoch/num_evicted"] == evictions_seen[-1]
    assert curriculum.stats()["epoch/num_evicted"] == 0
    assert curriculum.stats()["curriculum/num_evicted"] == evictions_seen[-1]


def test_zero_lp_count_counts_tasks_without_progress(curricula) -> None:
    curriculum = curricula(
        num_active_tasks=4, lp_min_presentations_for_eviction=1000, write_batch_size=1
    )
    tasks = [curriculum.get_task() for _ in range(4)]
    for _ in range(20):
        for i, task in enumerate(tasks[:3]):
            curriculum.update_task_performance(task.task_id, 1.0 if i == 0 else 0.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        curriculum.update_task_performance(tasks[3].task_id, float(rng.random()))
    stats = curriculum.stats()
    assert stats["lp/num_zero"] == 3
    assert stats["lp/max"] > 0


def test_gini_coefficient() -> None:
    assert gini(np.ones(5)) == pytest.approx(0.0)
    assert gini(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)
    assert gini(np.zeros(3)) == 0.0
    assert gini(np.array([])) == 0.0


def test_stats_cover_labels_and_are_cached_until_the_pool_changes(curricula) -> None:
    curriculum = curricula(num_active_tasks=8)
    tasks = [curriculum.get_task() for _ in range(8)]
    for task in tasks:
        curriculum.update_task_performance(task.task_id, 1.0)
    stats = curriculum.stats()
    labels = {t.get_label() for t in tasks}
    assert sum(stats[f"label/{name}/completions"] for name in labels) == 8
    assert all(stats[f"label/{name}/mean_reward"] == 1.0 for name in labels)
    assert curriculum.stats() == stats
    curriculum.update_task_performance(tasks[0].task_id, 0.0)
    assert curriculum.stats()["curriculum/num_completed"] == 9


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf, -0.1, 1.5, "high", None])
def test_bad_scores_raise_and_record_nothing(curricula, score) -> None:
    curriculum = curricula(num_active_tasks=4)
    task = curriculum.get_task()
    with pytest.raises(ScoreError) as caught:
        curriculum.update_task_performance(task.task_id, score)
    assert repr(score) in str(caught.value)
    with pytest.raises(ScoreError):
        curriculum.update_task_performance_batch([task.task_id, task.task_id], [0.5, score])
    assert curriculum.stats()["curriculum/num_completed"] == 0


def test_out_of_range_scores_clip_when_asked(curricula) -> None:
    curriculum = curricula(num_active_tasks=4, clip_scores=True, write_batch_size=1)
    task = curriculum.get_task()
    curriculum.update_task_performance(task.task_id, 1.5)
    curriculum.update_task_performance_batch([task.task_id], [-2.0])
    row = curriculum.backend.snapshot().rows[task.slot]
    assert row["score_sum"] == 1.0 and row["n_outcomes"] == 2
    with pytest.raises(ScoreError):
        curriculum.update_task_performance(task.task_id, math.nan)


def test_unknown_and_malformed_task_ids_raise(curricula) -> None:
    curriculum = curricula(num_active_tasks=4)
    curriculum.get_task()
    with pytest.raises(UnknownTaskError) as caught:
        curriculum.update_task_performance(12345, 0.5)
    assert "12345" in str(caught.value)
    for bad in (-1, 2**53, 1.5, "7", True):
        with pytest.raises(ConfigError):
            curriculum.update_task_performance(bad, 0.5)
    assert curriculum.stats()["curriculum/num_completed"] == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"num_active_tasks": 0},
        {"num_active_tasks": -3},
        {"max_labels": 0},
        {"write_batch_size": 0},
        {"lock_timeout_s": 0},
        {"lp_ema_timescale": 0.0},
        {"lp_eviction_threshold_percentile": 1.5},
        {"lp_num_active_tasks": 64},
        {"lp_session_id": "has space"},
        {"lp_session_id": "{tag}"},
    ],
)
def test_invalid_configs_raise_config_error_naming_the_value(fields) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(**fields)
    value = next(iter(fields.values()))
    assert str(value) in str(caught.value)


def test_every_error_shares_one_root() -> None:
    assert issubclass(ScoreError, CurriculumError)
    assert issubclass(UnknownTaskError, CurriculumError)
    assert issubclass(PoolClosedError, CurriculumError)


def test_closed_curriculum_refuses_use(curricula) -> None:
    curriculum = curricula(num_active_tasks=4)
    curriculum.close()
    with pytest.raises(PoolClosedError):
        curriculum.get_task()
    curriculum.close()  # idempotent


def test_buffered_outcomes_are_written_by_stats_and_close(backend_url) -> None:
    config = make_config(
        num_active_tasks=4,
        write_batch_size=1000,
        write_max_delay_s=3600,
        lp_backend_url=backend_url,
    )
    writer = Curriculum(config)
    reader = Curriculum(config)  # attaches to the same pool
    task = writer.get_task()
    for _ in range(10):
        writer.update_task_performance(task.task_id, 0.5)
    assert reader.backend.snapshot().counters["num_completed"] == 0
    writer.flush()
    assert reader.backend.snapshot().counters["num_completed"] == 10
    writer.update_task_performance(task.task_id, 0.5)
    reader.close()
    writer.close()
    assert isinstance(config, CurriculumConfig)


def test_late_outcomes_count_for_their_label(curricula, backend_url) -> None:
    config = make_config(
        lp_backend_url=backend_url,
        num_active_tasks=2,
        lp_min_presentations_for_eviction=1,
        lp_eviction_threshold_percentile=1.0,
        write_batch_size=1,
    )
    a = curricula(config)
    b = curricula(config)
    task = a.get_task()
    label = task.get_label()
    a.update_task_performance(task.task_id, 0.5)
    other = a.get_task()
    a.update_task_performance(other.task_id, 0.5)
    for _ in range(10):  # b evicts everything that has an outcome
        b.get_task()
    assert task.task_id not in b.backend.snapshot().rows["task_id"]
    a.update_task_performance(task.task_id, 1.0)  # a handed it out: late, not unknown
    stats = a.stats()
    assert stats["curriculum/num_late_outcomes"] == 1
    assert stats[f"label/{label}/completions"] >= 2


def test_learning_progress_defaults_are_valid() -> None:
    config = LearningProgressConfig()
    assert 0 < config.ema_timescale <= 1
    assert config.min_presentations_for_eviction >= config.min_samples_for_lp


def test_destroy_removes_the_pool_for_everyone(curricula) -> None:
    curriculum = curricula(num_active_tasks=4)
    curriculum.update_task_performance(curriculum.get_task().task_id, 0.5)
    handle = pickle.dumps(curriculum)
    curriculum.destroy()
    with pytest.raises(PoolClosedError):
        curriculum.get_task()
    with pytest.raises(PoolNotFoundError):
        pickle.loads(handle)  # a worker attaching afterwards finds no pool


def test_a_task_this_process_evicted_long_ago_still_takes_its_late_outcome(curricula) -> None:
    curriculum = curricula(
        num_active_tasks=4, lp_min_presentations_for_eviction=1, write_batch_size=1
    )
    first = curriculum.get_task()
    curriculum.update_task_performance(first.task_id, 0.5)
    for _ in range(3000):  # churn: the first task is evicted and many tasks come and go
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, 0.0)
    assert first.task_id not in curriculum.backend.snapshot().rows["task_id"]
    late_before = curriculum.stats()["curriculum/num_late_outcomes"]
    curriculum.update_task_performance(first.task_id, 0.5)
    assert curriculum.stats()["curriculum/num_late_outcomes"] == late_before + 1


def test_a_pool_with_a_generated_name_is_removed_by_its_creator(backend_url) -> None:
    config = make_config(num_active_tasks=4, lp_session_id=None, lp_backend_url=backend_url)
    creator = Curriculum(config)
    creator.update_task_performance(creator.get_task().task_id, 0.5)
    worker = pickle.loads(pickle.dumps(creator))  # attaches to the private pool
    worker.close()  # a worker's close leaves the pool alone
    assert creator.stats()["curriculum/num_completed"] == 1
    handle = pickle.dumps(creator)
    creator.close()
    with pytest.raises(PoolNotFoundError):
        pickle.loads(handle)


@pytest.mark.parametrize("algorithm", ["lp", "random"])
def test_tasks_whose_config_keeps_failing_are_evicted(curricula, algorithm) -> None:
    curriculum = curricula(num_active_tasks=4, algorithm=algorithm, max_task_failures=2)
    tasks = [curriculum.get_task() for _ in range(4)]
    broken = tasks[0]
    curriculum.report_task_failure(broken.task_id)
    assert broken.task_id in curriculum.backend.snapshot().rows["task_id"]  # one is not enough
    curriculum.report_task_failure(broken.task_id)
    replacement = curriculum.get_task()  # the next chance: the broken task goes
    rows = curriculum.backend.snapshot().rows
    assert broken.task_id not in rows["task_id"]
    assert replacement.slot == broken.slot and rows["n_failures"][broken.slot] == 0
    stats = curriculum.stats()
    assert stats["curriculum/num_failures"] == 2 and stats["epoch/num_failures"] == 2
    assert stats[f"label/{broken.get_label()}/failures"] == 2
    assert stats["curriculum/num_evicted"] == 1
    assert curriculum.on_epoch_end()["epoch/num_failures"] == 2
    with pytest.raises(UnknownTaskError):
        curriculum.report_task_failure(424242)


@pytest.mark.parametrize("algorithm", ["lp", "plr", "random"])
def test_a_view_of_the_empty_pool_still_draws_once_others_filled_it(curricula, algorithm) -> None:
    """B reads the pool while it is empty (its view stays current for ``snapshot_max_age_s``);
    A fills every slot at once. B's next draw finds no free slot and its view no task: it reads
    the pool again and hands out one of A's tasks (not an IndexError)."""
    a = curricula(num_active_tasks=4, algorithm=algorithm, snapshot_max_age_s=60.0)
    b = curricula(config=a.config)
    assert b.stats()["curriculum/num_active_tasks"] == 0
    created = {a.get_task().task_id for _ in range(4)}
    assert b.get_task().task_id in created
    assert b.stats()["curriculum/num_active_tasks"] == 4


def test_slices_show_score_and_sampling_share_per_bucket_value(curricula) -> None:
    curriculum = curricula(num_active_tasks=60, lp_min_presentations_for_eviction=1000)
    for _ in range(1200):
        task = curriculum.get_task()
        difficulty = task.get_bucket_values()["difficulty"]
        curriculum.update_task_performance(task.task_id, 1.0 - difficulty)
    stats = curriculum.stats()
    values = ("0.1", "0.5", "0.9")
    assert sum(stats[f"slice/difficulty/{v}/tasks"] for v in values) == 60
    assert sum(stats[f"slice/difficulty/{v}/sampling_share"] for v in values) == pytest.approx(1)
    scores = [stats[f"slice/difficulty/{v}/mean_score"] for v in values]
    assert scores == pytest.approx([0.9, 0.5, 0.1])  # every task of a value scores alike
    assert all(stats[f"slice/difficulty/{v}/score_std"] == pytest.approx(0) for v in values)
    sizes = [k for k in stats if k.startswith("slice/size/") and k.endswith("/tasks")]
    assert sum(stats[k] for k in sizes) == 60
    assert bucket_values("maze|map:C:/maps/a.txt|size:3") == {"map": "C:/maps/a.txt", "size": "3"}
    piped = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "maze"}),
        buckets={"mode": ["x|mode:hard"], "size": [3]},
    )
    label = piped.create().generate(0).label
    assert label == "maze|mode:x¦mode:hard|size:3"
    assert bucket_values(label) == {"mode": "x¦mode:hard", "size": "3"}
    off = curricula(num_active_tasks=4, slice_axes=0)
    off.get_task()
    assert not any(k.startswith("slice/") for k in off.stats())


def test_a_task_in_a_long_episode_is_never_forgotten_by_the_process_playing_it() -> None:
    """Thousands of other tasks come and go during one long episode; when the episode ends,
    after another process evicted its task, the outcome still counts (as late)."""
    config = make_config(
        generator=SingleTaskGenerator.Config(env={"label": "t"}),
        num_active_tasks=2,
        write_batch_size=1,
        snapshot_max_age_s=0.0,
        lp_min_presentations_for_eviction=1,
        lp_min_samples_for_lp=1,
    )
    player, other = Curriculum(config), None
    try:
        other = Curriculum(config)
        long_episode = player.get_task()
        handed_out = 1
        while handed_out < 8 * 2 + 16_384 + 100:  # past the size of the table of handed-out ids
            task = player.get_task()
            handed_out += 1
            if task.task_id != long_episode.task_id:
                player.update_task_performance(task.task_id, 0.5)
        assert long_episode.task_id in player.backend.snapshot().rows["task_id"]
        other.update_task_performance(long_episode.task_id, 0.0)
        while long_episode.task_id in other.backend.snapshot().rows["task_id"]:
            other.get_task()  # evicts it before long (one outcome is enough)
        late_before = player.stats()["curriculum/num_late_outcomes"]
        player.update_task_performance(long_episode.task_id, 1.0)
        assert player.stats()["curriculum/num_late_outcomes"] == late_before + 1
    finally:
        if other is not None:
            other.close()
        player.close()


def test_figures_with_nothing_to_average_are_nan_not_zero(curricula) -> None:
    """A label or slice without outcomes has no mean score nor success rate, and a label
    without active tasks has no learning progress: NaN, never a 0 that reads as measured."""
    curriculum = curricula(num_active_tasks=1, max_task_failures=1)
    first = curriculum.get_task()
    stats = curriculum.stats()
    prefix = f"label/{first.get_label()}"
    assert stats[f"{prefix}/completions"] == 0.0 and stats[f"{prefix}/active_tasks"] == 1.0
    for key in (f"{prefix}/mean_reward", f"{prefix}/success_rate", "reward/mean"):
        assert math.isnan(stats[key]), key
    assert math.isnan(stats["reward/active_mean"])
    slices = [k for k in stats if k.startswith("slice/") and k.endswith(("/mean_score", "_std"))]
    assert slices and all(math.isnan(stats[k]) for k in slices)
    assert math.isnan(curriculum.task_stats(first.task_id)["mean_score"])
    assert stats[f"{prefix}/mean_lp"] == 0.0  # an active task that has not moved: measured

    curriculum.update_task_performance(first.task_id, 1.0)
    task = curriculum.get_task()  # the only slot: the same task
    for _ in range(100):  # its env config fails: replaced, until by a task of another label
        curriculum.report_task_failure(task.task_id)
        task = curriculum.get_task()
        if task.get_label() != first.get_label():
            break
    assert task.get_label() != first.get_label()
    stats = curriculum.stats()
    assert stats[f"{prefix}/active_tasks"] == 0.0
    assert math.isnan(stats[f"{prefix}/mean_lp"])
    assert stats[f"{prefix}/mean_reward"] == 1.0 and stats[f"{prefix}/success_rate"] == 1.0
