"""Bad input of every kind gets a typed error naming the bad value, and the pool stays as it was.

Malformed checkpoints (beyond ``test_checkpoint.py``), configs, backend URLs (whose password
never shows), session ids that could break a Redis hash tag, labels of any Unicode and any
length, and bad scores, steps and task ids (beyond ``test_curriculum.py``). Every error derives
from ``curriculum.errors.CurriculumError``.
"""

from __future__ import annotations

import copy
import decimal
import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import redis_support
from conftest import make_config, pool_figures, unique_session
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from backends.layout import LABEL_NAME_BYTES, decode_label, encode_label
from backends.redis_backend import session_keys
from backends.stage_state import MAX_STAGES
from curriculum import (
    Curriculum,
    CurriculumConfig,
    CurriculumStage,
    DiscreteRandomConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
    StagedCurriculumConfig,
    TaskGeneratorSet,
)
from curriculum.errors import (
    BackendError,
    CheckpointError,
    ConfigError,
    CurriculumError,
    ScoreError,
    UnknownTaskError,
)
from curriculum.task_ids import MAX_TASK_ID

SECRET = "s3cret"

settings.register_profile(
    "curriculum-bad-input",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE = settings.get_profile("curriculum-bad-input")


# -- helpers ---------------------------------------------------------------------------------------


def _new(**fields: Any) -> Curriculum:
    fields.setdefault("num_active_tasks", 8)
    return Curriculum(make_config(**fields))


def _play(curriculum: Curriculum, episodes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, float(rng.random()))


@pytest.fixture
def played() -> Iterator[Curriculum]:
    """A /dev/shm pool with a few hundred outcomes (some tasks evicted), removed afterwards."""
    curriculum = _new(lp_min_presentations_for_eviction=5)
    _play(curriculum, 200)
    yield curriculum
    curriculum.destroy()


def _image(curriculum: Curriculum) -> tuple:
    """Everything observable about the pool: stats (after a flush) and the raw tables."""
    stats = pool_figures(curriculum.stats())
    snapshot = curriculum.backend.snapshot()
    return (
        stats,
        snapshot.rows.tobytes(),
        snapshot.labels.tobytes(),
        snapshot.label_names,
        snapshot.counters,
    )


def _still_works(curriculum: Curriculum) -> None:
    completed = curriculum.stats()["curriculum/num_completed"]
    task = curriculum.get_task()
    curriculum.update_task_performance(task.task_id, 0.5)
    assert curriculum.stats()["curriculum/num_completed"] == completed + 1


def _changed(state: dict, path: str, value: Any) -> dict:
    """A deep copy of ``state`` with ``path`` ("a.b" or "a.b.3") set to ``value`` (or deleted
    when ``value`` is ``KeyError``)."""
    broken = copy.deepcopy(state)
    *parents, leaf = path.split(".")
    node: Any = broken
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(leaf) if isinstance(node, list) else leaf
    if value is KeyError:
        del node[key]
    else:
        node[key] = value
    return broken


def _refused(curriculum: Curriculum, state: Any, *tokens: str) -> CheckpointError:
    """Loading ``state`` raises CheckpointError naming one of ``tokens`` and changes nothing."""
    before = _image(curriculum)
    with pytest.raises(CheckpointError) as caught:
        curriculum.load_state(state)
    message = str(caught.value)
    assert any(token.lower() in message.lower() for token in tokens), (tokens, message)
    assert _image(curriculum) == before
    return caught.value


def _active_slot(state: dict) -> int:
    return next(i for i, task_id in enumerate(state["rows"]["task_id"]) if task_id >= 0)


# -- checkpoints -----------------------------------------------------------------------------------

TOP_LEVEL = ("format", "version", "params", "rows", "labels", "counters", "stage", "rng")


@pytest.mark.parametrize("field", [f for f in TOP_LEVEL if f != "params"])
def test_checkpoint_without_a_top_level_field_is_refused_naming_it(played, field) -> None:
    _refused(played, _changed(played.get_state(), field, KeyError), field)
    _still_works(played)


@pytest.mark.parametrize(
    ("path", "tokens"),
    [
        ("labels.completions", ["completions"]),
        ("counters.num_evicted", ["num_evicted"]),
        ("stage.performance", ["performance"]),
        ("params.capacity", ["capacity"]),
        ("rng.state", ["state"]),
        ("rows.task_id.0", ["task_id"]),  # a column one value short
        ("labels.name.0", ["name", "labels"]),
    ],
)
def test_truncated_checkpoint_parts_are_refused_naming_them(played, path, tokens) -> None:
    _refused(played, _changed(played.get_state(), path, KeyError), *tokens)


WRONG_TYPES = [None, 7, 1.5, "text", [1, 2], True]


@pytest.mark.parametrize("field", TOP_LEVEL)
def test_checkpoint_fields_of_the_wrong_type_are_refused(played, field) -> None:
    state = played.get_state()
    before = _image(played)
    for value in WRONG_TYPES:
        if field == "version" and value is True:
            continue  # True == 1 is not version 2 either; covered by 7
        with pytest.raises(CheckpointError):
            played.load_state(_changed(state, field, value))
    assert _image(played) == before
    _still_works(played)


@pytest.mark.parametrize(
    "field",
    [
        "format",
        "version",
        "params",
        "rows",
        "labels",
        "counters",
        "stage",
        "rng",
    ],
)
def test_a_wrongly_typed_checkpoint_field_is_named_in_the_error(played, field) -> None:
    _refused(played, _changed(played.get_state(), field, None), field)


FLOAT_ROW_FIELDS = ("baseline", "fast", "slow", "perf", "reward", "reward_sq", "score_sum")


@pytest.mark.parametrize("field", FLOAT_ROW_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_statistics_are_refused_naming_the_field(played, field, value) -> None:
    state = played.get_state()
    _refused(played, _changed(state, f"rows.{field}.{_active_slot(state)}", value), field)


@pytest.mark.parametrize("task_id", [2**53, MAX_TASK_ID + 1000, -2, -(2**40)])
def test_task_ids_outside_the_id_space_are_refused(played, task_id) -> None:
    state = played.get_state()
    _refused(played, _changed(state, f"rows.task_id.{_active_slot(state)}", task_id), "task id")


@pytest.mark.parametrize("path", ["rows.task_id.0", "counters.num_created", "rows.n_outcomes.0"])
def test_integers_beyond_int64_are_refused(played, path) -> None:
    _refused(played, _changed(played.get_state(), path, 2**70), path.split(".")[1])


def test_a_failed_load_leaves_a_pool_that_moved_on_untouched(played) -> None:
    state = played.get_state()
    _play(played, 40, seed=2)  # the pool's rows now differ from the checkpoint's
    before = _image(played)
    raised: BaseException | None = None
    try:
        played.load_state(_changed(state, "counters.num_evicted", 2**70))
    except Exception as error:
        raised = error
    assert _image(played) == before, f"half imported ({raised!r})"
    assert isinstance(raised, CheckpointError), repr(raised)


@pytest.mark.parametrize("offset", [0, 1, 10_000])
def test_label_ids_past_the_label_table_are_refused(played, offset) -> None:
    state = played.get_state()
    label_id = len(state["labels"]["name"]) + offset
    slot = _active_slot(state)
    _refused(played, _changed(state, f"rows.label_id.{slot}", label_id), str(label_id))


@pytest.mark.parametrize("label_id", [-2, -3, -(2**40)])
def test_negative_label_ids_of_active_tasks_are_refused(played, label_id) -> None:
    state = played.get_state()
    slot = _active_slot(state)
    _refused(played, _changed(state, f"rows.label_id.{slot}", label_id), str(label_id))


@pytest.mark.parametrize("stage", [MAX_STAGES, 99, -1, -(2**40)])
def test_a_stage_record_with_a_bad_stage_index_is_refused(played, stage) -> None:
    _refused(played, _changed(played.get_state(), "stage.stage", stage), str(stage))


@pytest.mark.parametrize(
    ("path", "value"),
    [("stage.stage", "first"), ("stage.transitions", -1), ("stage.outcomes.0", -5)],
)
def test_a_damaged_stage_record_is_refused(played, path, value) -> None:
    _refused(played, _changed(played.get_state(), path, value), "stage", str(value))


@pytest.mark.parametrize(
    "path", ["counters.num_created", "rows.n_outcomes.@", "labels.completions.0"]
)
def test_negative_counters_are_refused(played, path) -> None:
    state = played.get_state()
    path = path.replace("@", str(_active_slot(state)))
    _refused(played, _changed(state, path, -1), path.split(".")[1], "-1", "negative")


@pytest.mark.parametrize(("field", "value"), [("baseline", 1.0), ("fast", 1.5), ("perf", -0.25)])
def test_statistics_outside_their_range_are_refused(played, field, value) -> None:
    state = played.get_state()
    _refused(played, _changed(state, f"rows.{field}.{_active_slot(state)}", value), field)


def test_non_finite_label_statistics_are_refused(played) -> None:
    state = played.get_state()
    _refused(played, _changed(state, "labels.score_sum.0", math.nan), "score_sum")


def test_a_fractional_task_id_is_refused(played) -> None:
    state = played.get_state()
    _refused(played, _changed(state, f"rows.task_id.{_active_slot(state)}", 1.5), "task")


def test_a_task_id_in_two_slots_is_refused(played) -> None:
    state = played.get_state()
    ids = state["rows"]["task_id"]
    first, second = [i for i, task_id in enumerate(ids) if task_id >= 0][:2]
    _refused(played, _changed(state, f"rows.task_id.{second}", ids[first]), str(ids[first]))


def test_a_label_name_twice_in_the_table_is_refused(played) -> None:
    state = played.get_state()
    names = state["labels"]["name"]
    assert len(names) >= 2
    _refused(played, _changed(state, "labels.name.1", names[0]), names[0])


@pytest.mark.parametrize(
    "data", [42, 3.5, b"curriculum-state", ("format", "curriculum-state"), {1, 2}]
)
def test_non_dict_checkpoints_are_refused_naming_their_type(played, data) -> None:
    _refused(played, data, type(data).__name__)


def test_a_checkpoint_serialised_as_a_json_string_is_refused(played) -> None:
    _refused(played, json.dumps(played.get_state()), "str")


def test_default_msgpack_and_json_round_trips_load_and_restore_the_pool(played) -> None:
    state = played.get_state()
    stats, rows, _, names, counters = _image(played)
    # default options: strict map keys, str not bytes; JSON with NaN forbidden
    for encoded in (
        msgpack.unpackb(msgpack.packb(state)),
        json.loads(json.dumps(state, allow_nan=False)),
    ):
        _play(played, 30, seed=1)  # move the pool on (new labels too), then restore it
        played.load_state(encoded)
        now_stats, now_rows, _, now_names, now_counters = _image(played)
        assert now_rows == rows
        # the label table is append-only (ids never change): labels created after the
        # checkpoint stay, with nothing counted
        assert now_names[: len(names)] == names
        assert {k: v for k, v in now_counters.items() if k != "num_labels"} == {
            k: v for k, v in counters.items() if k != "num_labels"
        }
        for key, value in now_stats.items():
            if key in stats and key != "curriculum/num_labels":
                assert value == stats[key] or (math.isnan(value) and math.isnan(stats[key])), key
            elif key.endswith(("/completions", "/samples", "/created")):
                assert value == 0, key
    _still_works(played)


# -- configs ---------------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("fields", "field", "shown"),
    [
        # wrong types
        ({"num_active_tasks": "many"}, "num_active_tasks", "many"),
        ({"seed": "seven"}, "seed", "seven"),
        ({"write_batch_size": [1]}, "write_batch_size", "[1]"),
        ({"clip_scores": "maybe"}, "clip_scores", "maybe"),
        ({"slice_axes": 1.5}, "slice_axes", "1.5"),
        ({"lp_use_bidirectional": "sometimes"}, "use_bidirectional", "sometimes"),
        ({"lp_ema_timescale": "fast"}, "ema_timescale", "fast"),
        ({"lp_min_samples_for_lp": 2.5}, "min_samples_for_lp", "2.5"),
        ({"lp_session_id": 42}, "session_id", "42"),
        ({"lp_backend_url": 6379}, "backend_url", "6379"),
        # negative or oversized sizes
        ({"max_task_failures": -1}, "max_task_failures", "-1"),
        ({"slice_axes": -1}, "slice_axes", "-1"),
        ({"max_labels": -1}, "max_labels", "-1"),
        ({"write_batch_size": -64}, "write_batch_size", "-64"),
        ({"num_active_tasks": 10**7}, "num_active_tasks", "10000000"),
        ({"lp_min_samples_for_lp": 0}, "min_samples_for_lp", "0"),
        ({"lp_min_presentations_for_eviction": -5}, "min_presentations_for_eviction", "-5"),
        ({"lp_num_active_tasks": -8}, "num_active_tasks", "-8"),
        # NaN and infinite floats
        ({"write_max_delay_s": NAN}, "write_max_delay_s", "nan"),
        ({"write_max_delay_s": INF}, "write_max_delay_s", "inf"),
        ({"snapshot_max_age_s": NAN}, "snapshot_max_age_s", "nan"),
        ({"lock_timeout_s": NAN}, "lock_timeout_s", "nan"),
        ({"lock_timeout_s": -INF}, "lock_timeout_s", "-inf"),
        ({"lp_ema_timescale": NAN}, "ema_timescale", "nan"),
        ({"lp_slow_timescale_factor": NAN}, "slow_timescale_factor", "nan"),
        ({"lp_exploration_bonus": NAN}, "exploration_bonus", "nan"),
        ({"lp_exploration_bonus": INF}, "exploration_bonus", "inf"),
        ({"lp_progress_smoothing": NAN}, "progress_smoothing", "nan"),
        ({"lp_performance_bonus_weight": NAN}, "performance_bonus_weight", "nan"),
        ({"lp_lp_score_temperature": INF}, "lp_score_temperature", "inf"),
        ({"lp_z_score_amplification": NAN}, "z_score_amplification", "nan"),
        ({"lp_rand_task_rate": NAN}, "rand_task_rate", "nan"),
        ({"lp_eviction_threshold_percentile": NAN}, "eviction_threshold_percentile", "nan"),
        ({"lp_task_tracker_ema_alpha": NAN}, "task_tracker_ema_alpha", "nan"),
        ({"lp_success_threshold": NAN}, "success_threshold", "nan"),
        # unknown fields (and a typo)
        ({"bogus_field": 1}, "bogus_field", "1"),
        ({"lp_bogus_field": "x"}, "bogus_field", "x"),
        ({"lp_ema_timescal": 0.1}, "ema_timescal", "0.1"),
        ({"algorithm": "random", "lp_ema_timescale": 0.1}, "ema_timescale", "0.1"),
    ],
)
def test_malformed_configs_raise_config_error_naming_field_and_value(fields, field, shown) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(**fields)
    message = str(caught.value)
    assert field in message and shown in message, message


@pytest.mark.parametrize(
    ("build", "shown"),
    [
        (lambda: Span(5, 1), "5"),
        (lambda: Span(0.0, NAN), "nan"),
        (lambda: SingleTaskGenerator.Config(env={"label": "x"}, bogus=1), "bogus"),
        (
            lambda: TaskGeneratorSet.Config(
                generator_configs=[SingleTaskGenerator.Config(env={})], weights=[-1.0]
            ),
            "-1.0",
        ),
        (lambda: CurriculumConfig(task_generator=5), "5"),
        (lambda: CurriculumConfig(task_generator={"type": "nope"}), "nope"),
    ],
)
def test_malformed_generator_configs_raise_config_error(build, shown) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert shown in str(caught.value)


LP_FIELDS = [*LearningProgressConfig.model_fields, "bogus"]
CURRICULUM_FIELDS = [f for f in CurriculumConfig.model_fields if f != "task_generator"]
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(PROFILE, max_examples=150)
@given(
    lp=st.dictionaries(st.sampled_from(LP_FIELDS), ANY_VALUE, max_size=4),
    top=st.dictionaries(st.sampled_from([*CURRICULUM_FIELDS, "bogus"]), ANY_VALUE, max_size=3),
)
def test_any_config_input_builds_a_valid_config_or_raises_config_error(lp, top) -> None:
    try:
        algorithm = LearningProgressConfig(**lp)
        config = CurriculumConfig(
            task_generator=SingleTaskGenerator.Config(env={"label": "x"}),
            **{k: v for k, v in top.items() if k != "algorithm_config"},
            algorithm_config=algorithm,
        )
    except ConfigError:
        return
    # what validation lets through is in range
    assert 0 < algorithm.ema_timescale <= 1 and 0 < algorithm.slow_timescale_factor <= 1
    assert 0 <= algorithm.progress_smoothing < 0.5 and 0 <= algorithm.rand_task_rate <= 1
    assert 0 < algorithm.eviction_threshold_percentile <= 1
    for name in ("exploration_bonus", "performance_bonus_weight", "lp_score_temperature"):
        assert math.isfinite(getattr(algorithm, name))
    assert algorithm.min_samples_for_lp >= 1 and algorithm.min_presentations_for_eviction >= 1
    assert config.num_active_tasks >= 1 and config.write_batch_size >= 1
    assert math.isfinite(config.lock_timeout_s) and config.lock_timeout_s > 0


# -- backend URLs ----------------------------------------------------------------------------------


def _url_error(url: str) -> tuple[CurriculumConfig, CurriculumError]:
    config = make_config(num_active_tasks=2, lp_backend_url=url)
    with pytest.raises(CurriculumError) as caught:
        Curriculum(config).close()
    return config, caught.value


def _assert_masked(config: CurriculumConfig, error: BaseException) -> None:
    shown = [
        str(error),
        repr(error),
        str(config),
        repr(config),
        str(config.algorithm_config),
        repr(config.algorithm_config),
    ]
    for text in shown:
        assert SECRET not in text, text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://user:{SECRET}@127.0.0.1:notaport/0", "notaport"),
        (f"memcached://user:{SECRET}@127.0.0.1:11211", "memcached"),
        (f"redis://user:{SECRET}@127.0.0.1:1/0?socket_timeout=abc", "socket_timeout"),
        ("", "''"),
        ("localhost:6379", "localhost:6379"),
        (f"redis://user:{SECRET}@127.0.0.1:99999/0", "99999"),
        (f"redis://user:{SECRET}@[::1/0", "::1"),
        (f"rediss://user:{SECRET}@127.0.0.1:1/0?ssl_cert_reqs=bogus", "ssl_cert_reqs"),
        # no host: redis-py would silently use localhost
        (f"redis://user:{SECRET}@:6379/0", "names no host"),
        ("redis://", "redis://127.0.0.1:6379/0"),
        ("rediss+cluster://", "names no host"),
        ("unix://", "names no socket"),
    ],
)
def test_malformed_urls_raise_config_error_naming_the_url_without_its_password(url, shown) -> None:
    config, error = _url_error(url)
    assert isinstance(error, ConfigError), repr(error)
    assert shown in str(error), str(error)
    _assert_masked(config, error)


def test_unreachable_urls_raise_backend_error_without_the_password(tmp_path) -> None:
    port = redis_support.free_port()
    for url, shown in [
        (f"redis://user:{SECRET}@127.0.0.1:{port}/0", f":{port}"),
        (f"unix://user:{SECRET}@{tmp_path}/missing.sock", "missing.sock"),
    ]:
        config, error = _url_error(url)
        assert isinstance(error, BackendError), repr(error)
        assert shown in str(error)
        _assert_masked(config, error)


def test_a_password_in_the_query_string_is_masked_too() -> None:
    port = redis_support.free_port()
    config, error = _url_error(f"redis://127.0.0.1:{port}/0?password={SECRET}")
    _assert_masked(config, error)


# -- session ids -----------------------------------------------------------------------------------

BAD_SESSIONS = [
    "{x}",
    "a{b}c",
    "}",
    "x{",
    "{}",
    "a b",
    " lead",
    "trail ",
    "a/b",
    "../x",
    "",
    "x" * 101,
    "é",
    "日本語",
    "emoji😀",
    "a\tb",
    "a\x00b",
    "\nnewline-first",
    ".hidden",
    "-dash",
    "_under",
    "a:b",
    "a*b",
]


def _stage() -> CurriculumStage:
    return CurriculumStage(name="only", curriculum=make_config(lp_session_id=None))


@pytest.mark.parametrize("session", BAD_SESSIONS)
def test_bad_session_ids_are_refused_naming_them(session) -> None:
    for build in (
        lambda: LearningProgressConfig(session_id=session),
        lambda: DiscreteRandomConfig(session_id=session),
        lambda: StagedCurriculumConfig(stages=[_stage()], session_id=session),
    ):
        with pytest.raises(ConfigError) as caught:
            build()
        assert repr(session) in str(caught.value)


def test_staged_session_ids_leave_room_for_stage_suffixes() -> None:
    stage = _stage()
    with pytest.raises(ConfigError, match="x" * 91):
        StagedCurriculumConfig(stages=[stage], session_id="x" * 91)
    assert StagedCurriculumConfig(stages=[stage], session_id="x" * 90).session_id == "x" * 90


@pytest.mark.parametrize("kind", ["lp", "staged"])
def test_a_session_id_with_a_trailing_newline_is_refused(kind) -> None:
    with pytest.raises(ConfigError):
        if kind == "lp":
            LearningProgressConfig(session_id="exp1\n")
        else:
            StagedCurriculumConfig(stages=[_stage()], session_id="exp1\n")


@settings(PROFILE, max_examples=200)
@given(session=st.one_of(st.text(max_size=110), st.from_regex(r"\A[A-Za-z0-9._{} -]{0,110}\Z")))
def test_an_accepted_session_id_cannot_leave_its_hash_tag(session) -> None:
    try:
        LearningProgressConfig(session_id=session)
    except ConfigError as error:
        assert repr(session) in str(error)
        return
    assert 1 <= len(session) <= 100 and session.isascii()
    assert not set(session) & set("{} /\\:*?\t\x00")
    for key in session_keys(session):
        assert key.count("{") == 1 and key.count("}") == 1
        assert key[key.index("{") + 1 : key.index("}")] == session


# -- labels ----------------------------------------------------------------------------------------

LABELS = [
    "plain",
    "",
    "emoji 😀🎉👩‍👩‍👧",
    "rtl \u202eevil\u202c עברית العربية",
    "nul\x00inside",
    "trailing nul\x00",
    "zero\u200bwidth",
    "combining e\u0301",
    "|pipes:and/slashes|",
    "\n\t\r",
    "x" * LABEL_NAME_BYTES,  # exactly fits
    "y" * (LABEL_NAME_BYTES + 1),  # one byte over
    "é" * (LABEL_NAME_BYTES // 2),  # 128 bytes of 2-byte characters
    "é" * (LABEL_NAME_BYTES // 2 + 1),
    "z" * (LABEL_NAME_BYTES - 1) + "€",  # the cut falls inside a 3-byte character
    "p" * 300 + "A",  # two long labels that differ only after the cut
    "p" * 300 + "B",
    "😀" * 200,
]


def _shown(label: str) -> str:
    """The label as the pool's label table (and stats keys) show it."""
    return decode_label(encode_label(label))


def test_stored_label_forms_fit_a_row_and_stay_distinct() -> None:
    stored = [encode_label(label) for label in LABELS]
    assert len(set(stored)) == len(LABELS)
    for label, raw in zip(LABELS, stored, strict=True):
        assert len(raw) <= LABEL_NAME_BYTES
        assert not raw.endswith(b"\x00")  # fixed-width storage would strip it
        short = len(label.encode()) <= LABEL_NAME_BYTES and not label.endswith("\x00")
        assert (_shown(label) == label) == short, label
        raw.decode("utf-8")  # shortened at a character boundary


def _label_set(labels: list[str]) -> TaskGeneratorSet.Config:
    return TaskGeneratorSet.Config(
        generator_configs=[SingleTaskGenerator.Config(env={"label": label}) for label in labels]
    )


def _check_labels(backend_url: str | None, labels: list[str], capacity: int) -> set[str]:
    """Fill a pool whose tasks carry ``labels``, play each task once, check the stats keys;
    the labels seen."""
    config = make_config(
        generator=_label_set(labels),
        num_active_tasks=capacity,
        lp_backend_url=backend_url,
        lp_session_id=unique_session("labels"),
    )
    curriculum = Curriculum(config)
    try:
        tasks = [curriculum.get_task() for _ in range(capacity)]
        for task in tasks:
            assert task.get_label() in labels  # the full label, never the shortened form
            curriculum.update_task_performance(task.task_id, 1.0)
        per_label = Counter(task.get_label() for task in tasks)
        stats = curriculum.stats()
        assert stats["curriculum/num_labels"] == len(per_label)
        for label, count in per_label.items():
            assert stats[f"label/{_shown(label)}/completions"] == count, label
            assert stats[f"label/{_shown(label)}/created"] == count, label
        assert len({_shown(label) for label in per_label}) == len(per_label)
        assert all(math.isfinite(value) for value in stats.values())
        _still_works(curriculum)
        return set(per_label)
    finally:
        curriculum.destroy()


def test_labels_of_any_unicode_and_length_are_kept_apart_on_every_backend(backend_url) -> None:
    seen = _check_labels(backend_url, LABELS, capacity=160)
    assert seen == set(LABELS)  # every label drawn at least once (deterministic for the seed)


label_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


@settings(PROFILE, max_examples=6)
@given(
    labels=st.lists(
        st.one_of(label_text, st.builds(lambda a, b: "q" * 130 + a + b, label_text, label_text)),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
def test_any_unicode_labels_work_on_every_backend(backend_url, labels) -> None:
    assert len({encode_label(label) for label in labels}) == len(labels)
    _check_labels(backend_url, labels, capacity=12)


def test_a_label_that_is_not_valid_unicode_is_refused_naming_it() -> None:
    label = "bad\ud800label"
    try:
        config = make_config(generator=SingleTaskGenerator.Config(env={"label": label}))
    except ConfigError as error:  # refusing it when the config is built is a fix too
        assert repr(label) in str(error)
        return
    curriculum = Curriculum(config)
    try:
        before = _image(curriculum)
        with pytest.raises(ConfigError) as caught:
            curriculum.get_task()
        assert repr(label) in str(caught.value)
        assert _image(curriculum)[0] == before[0]
    finally:
        curriculum.destroy()


# -- scores, steps and task ids --------------------------------------------------------------------


@pytest.fixture
def fresh() -> Iterator[Curriculum]:
    """A /dev/shm pool whose tasks are all handed out once and flushed (outcomes buffered)."""
    curriculum = _new(num_active_tasks=4, write_batch_size=64, write_max_delay_s=3600)
    for _ in range(4):
        curriculum.get_task()
    curriculum.flush()
    yield curriculum
    curriculum.destroy()


def _task_ids(curriculum: Curriculum) -> list[int]:
    rows = curriculum.backend.snapshot().rows
    return [int(task_id) for task_id in rows["task_id"] if task_id >= 0]


BAD_IDS = [True, False, np.True_, -1, -(2**63), 2**53, 2**64, 1.5, np.float64(3.0), "7", None, b"1"]


def _names(bad: Any, message: str) -> bool:
    return repr(bad) in message or (isinstance(bad, int) and str(int(bad)) in message)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_task_ids_are_refused_by_failure_reports_and_lookups(fresh, bad) -> None:
    before = _image(fresh)
    for call in (fresh.report_task_failure, fresh.task_for_id):
        with pytest.raises(ConfigError) as caught:
            call(bad)
        assert _names(bad, str(caught.value)), str(caught.value)
    assert _image(fresh) == before
    _still_works(fresh)


@pytest.mark.parametrize(
    "bad",
    [b for b in BAD_IDS],
    ids=repr,
)
def test_bad_task_ids_in_a_batch_are_refused_and_record_nothing(fresh, bad) -> None:
    good = _task_ids(fresh)[0]
    before = _image(fresh)
    with pytest.raises(ConfigError) as caught:
        fresh.update_task_performance_batch([good, bad], [0.5, 0.5])
    assert _names(bad, str(caught.value)), str(caught.value)
    assert _image(fresh) == before
    _still_works(fresh)


@pytest.mark.parametrize(
    "ids",
    [np.array([0, -1]), np.array([0, 2**53]), np.array([2**63], dtype=np.uint64)],
    ids=repr,
)
def test_bad_task_ids_in_integer_arrays_are_named(fresh, ids) -> None:
    ids = ids.copy()
    if ids[0] == 0:
        ids[0] = _task_ids(fresh)[0]
    bad = int(ids[-1])
    before = _image(fresh)
    with pytest.raises(ConfigError, match=str(bad)):
        fresh.update_task_performance_batch(ids, [0.5] * len(ids))
    assert _image(fresh) == before


@pytest.mark.parametrize("unknown", [0, MAX_TASK_ID, 123_456_789])
def test_an_unknown_task_id_in_a_batch_records_none_of_the_batch(fresh, unknown) -> None:
    good = _task_ids(fresh)
    before = _image(fresh)
    with pytest.raises(UnknownTaskError, match=str(unknown)):
        fresh.update_task_performance_batch([*good, unknown], [0.5] * (len(good) + 1))
    with pytest.raises(UnknownTaskError, match=str(unknown)):
        fresh.update_task_performance(unknown, 0.5)
    assert _image(fresh) == before
    _still_works(fresh)


BAD_SCORES = [
    1.1,
    math.nextafter(1.0, 2.0),
    -1e-300,
    np.float32("nan"),
    np.float64("-inf"),
    decimal.Decimal("NaN"),
    0.5j,
    [0.5],
    {"score": 0.5},
]


@pytest.mark.parametrize("score", BAD_SCORES, ids=repr)
@pytest.mark.parametrize("clip", [False, True])
def test_bad_scores_are_refused_in_single_and_batch_calls(score, clip) -> None:
    curriculum = _new(num_active_tasks=2, clip_scores=clip)
    try:
        task = curriculum.get_task()
        before = _image(curriculum)
        clipped = clip and isinstance(score, float) and not math.isnan(score)
        clipped = clipped and math.isfinite(score)
        if clipped:  # out of range but finite: clipped instead
            curriculum.update_task_performance(task.task_id, score)
            assert curriculum.stats()["curriculum/num_completed"] == 1
            return
        with pytest.raises(ScoreError) as caught:
            curriculum.update_task_performance(task.task_id, score)
        assert repr(score) in str(caught.value)
        with pytest.raises(ScoreError):
            curriculum.update_task_performance_batch([task.task_id] * 2, [0.25, score])
        assert _image(curriculum) == before
    finally:
        curriculum.destroy()


@pytest.fixture(scope="module")
def shared() -> Iterator[Curriculum]:
    curriculum = _new(num_active_tasks=2, write_batch_size=1)
    yield curriculum
    curriculum.destroy()


@settings(PROFILE, max_examples=120)
@given(
    score=st.one_of(
        st.floats(),
        st.floats(max_value=0.0, exclude_max=True),
        st.floats(min_value=1.0, exclude_min=True),
    )
)
def test_any_float_is_recorded_when_in_range_and_refused_otherwise(shared, score) -> None:
    task = shared.get_task()
    before = shared.stats()["curriculum/num_completed"]
    if math.isfinite(score) and 0.0 <= score <= 1.0:
        shared.update_task_performance(task.task_id, score)
        assert shared.stats()["curriculum/num_completed"] == before + 1
        return
    with pytest.raises(ScoreError):
        shared.update_task_performance(task.task_id, score)
    with pytest.raises(ScoreError):
        shared.update_task_performance_batch(np.array([task.task_id]), np.array([score]))
    assert shared.stats()["curriculum/num_completed"] == before


@pytest.mark.parametrize("score", ["0.5", b"0.5"], ids=repr)
def test_numeric_strings_are_not_scores(fresh, score) -> None:
    task_id = _task_ids(fresh)[0]
    before = _image(fresh)
    with pytest.raises(ScoreError):
        fresh.update_task_performance(task_id, score)
    with pytest.raises(ScoreError):
        fresh.update_task_performance_batch([task_id], [score])
    assert _image(fresh) == before


@pytest.mark.parametrize("steps", [-1, True, 1.5, "3", None, np.float64(2.0)], ids=repr)
def test_bad_steps_are_refused_naming_them(fresh, steps) -> None:
    task_id = _task_ids(fresh)[0]
    before = _image(fresh)
    with pytest.raises(ScoreError) as caught:
        fresh.update_task_performance(task_id, 0.5, steps=steps)
    assert repr(steps) in str(caught.value)
    for batch_steps in ([steps], [1, 2], 3, np.int64(3)):  # bad value, count, or a scalar
        with pytest.raises(ScoreError, match="steps"):
            fresh.update_task_performance_batch([task_id], [0.5], steps=batch_steps)
    assert _image(fresh) == before
    _still_works(fresh)


def test_steps_too_large_for_the_pool_are_refused_at_the_call(fresh) -> None:
    task_id = _task_ids(fresh)[0]
    before = _image(fresh)
    try:
        with pytest.raises(ScoreError, match=str(2**63)):
            fresh.update_task_performance(task_id, 0.5, steps=2**63)
    finally:
        fresh._session.queue.discard()  # let the fixture remove the pool either way
    assert _image(fresh) == before


def test_a_batch_whose_steps_overflow_is_refused(fresh) -> None:
    task_id = _task_ids(fresh)[0]
    before = _image(fresh)
    with pytest.raises(ScoreError, match="steps"):
        fresh.update_task_performance_batch(
            [task_id, task_id], [0.5, 0.5], steps=np.array([2**62, 2**62])
        )
    assert _image(fresh) == before
