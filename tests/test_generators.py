"""Tests of curriculum.generators and curriculum.paths."""

from __future__ import annotations

import json
import math
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from curriculum.errors import ConfigError, InvariantViolationError
from curriculum.generators import (
    AnyTaskGeneratorConfig,
    BucketedTaskGenerator,
    GeneratedTask,
    SingleTaskGenerator,
    Span,
    TaskGeneratorSet,
    config_fingerprint,
    generator_config_from_json,
)
from curriculum.paths import env_to_plain, get_path, set_paths

REPO_ROOT = Path(__file__).resolve().parents[1]
IDS = range(3000)


class Game(BaseModel):
    num_agents: int = 2
    width: int = 16


class EnvModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = "arena"
    difficulty: float = 0.0
    game: Game = Game()


def nav_config(**kwargs: Any) -> BucketedTaskGenerator.Config:
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "nav", "difficulty": 0.0}),
        buckets={"difficulty": [0.1, 0.5, 0.9], "size": Span(8, 32)},
        **kwargs,
    )


def nested_config() -> TaskGeneratorSet.Config:
    return TaskGeneratorSet.Config(
        generator_configs=[
            nav_config(),
            BucketedTaskGenerator.Config(
                child_generator_config=SingleTaskGenerator.Config(
                    env=EnvModel(), overrides={"game.width": 24}
                ),
                buckets={"game.num_agents": Span(1, 4), "difficulty": Span(0.0, 1.0)},
            ),
        ],
        weights=[0.3, 0.7],
    )


# --- determinism -------------------------------------------------------------------------


def test_same_id_same_config_across_generators() -> None:
    a, b = nav_config().create(), nav_config().create()
    for task_id in [0, 1, 7, 12345, 2**53 - 1]:
        assert a.generate(task_id) == b.generate(task_id)


def test_same_id_same_config_in_subprocess() -> None:
    ids = [0, 1, 2, 99, 2**40 + 3, 2**53 - 1]
    script = (
        "import json\n"
        "from curriculum.generators import BucketedTaskGenerator, SingleTaskGenerator, Span\n"
        "cfg = BucketedTaskGenerator.Config(\n"
        "    child_generator_config=SingleTaskGenerator.Config(\n"
        "        env={'label': 'nav', 'difficulty': 0.0}),\n"
        "    buckets={'difficulty': [0.1, 0.5, 0.9], 'size': Span(8, 32)})\n"
        "gen = cfg.create()\n"
        f"print(json.dumps([[gen.generate(i).env_cfg, gen.generate(i).label] for i in {ids}]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "random"},
    )
    gen = nav_config().create()
    expected = [[gen.generate(i).env_cfg, gen.generate(i).label] for i in ids]
    assert json.loads(out.stdout) == json.loads(json.dumps(expected))


def test_different_ids_usually_differ() -> None:
    gen = nav_config().create()
    envs = [gen.generate(i).env_cfg for i in range(400)]
    differing = sum(envs[i] != envs[i + 1] for i in range(len(envs) - 1))
    assert differing > 0.8 * (len(envs) - 1)


def test_generate_returns_fresh_copies() -> None:
    gen = SingleTaskGenerator.Config(env={"game": {"num_agents": 2}}).create()
    first = gen.generate(3)
    first.env_cfg["game"]["num_agents"] = 99
    assert gen.generate(3).env_cfg == {"game": {"num_agents": 2}}


def test_generator_pickles() -> None:
    gen = nested_config().create()
    clone = pickle.loads(pickle.dumps(gen))
    for task_id in range(50):
        assert clone.generate(task_id) == gen.generate(task_id)


# --- buckets and spans ---------------------------------------------------------------------


def test_list_bucket_values_are_listed_and_roughly_uniform() -> None:
    gen = nav_config().create()
    counts = Counter(gen.generate(i).env_cfg["difficulty"] for i in IDS)
    assert set(counts) == {0.1, 0.5, 0.9}
    expected = len(IDS) / 3
    for value, count in counts.items():
        assert 0.85 * expected < count < 1.15 * expected, (value, count)


def test_int_span_inclusive_and_hits_both_ends() -> None:
    gen = nav_config().create()
    sizes = [gen.generate(i).env_cfg["size"] for i in IDS]
    assert all(type(s) is int and 8 <= s <= 32 for s in sizes)
    assert min(sizes) == 8
    assert max(sizes) == 32


def test_float_span_stays_in_range() -> None:
    cfg = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={}),
        buckets={"speed": Span(0.25, 0.75)},
    )
    gen = cfg.create()
    speeds = [gen.generate(i).env_cfg["speed"] for i in range(1000)]
    assert all(isinstance(s, float) and 0.25 <= s < 0.75 for s in speeds)
    assert max(speeds) - min(speeds) > 0.4


def test_span_keyword_constructor_and_mixed_bounds_are_float() -> None:
    assert Span(low=1, high=2) == Span(1, 2)
    gen = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={}), buckets={"x": Span(1, 2.0)}
    ).create()
    assert all(isinstance(gen.generate(i).env_cfg["x"], float) for i in range(50))


def test_label_format_and_bucket_values() -> None:
    gen = nav_config().create()
    for task_id in range(50):
        task = gen.generate(task_id)
        assert isinstance(task, GeneratedTask)
        assert task.task_id == task_id
        difficulty, size = task.env_cfg["difficulty"], task.env_cfg["size"]
        assert task.label == f"nav|difficulty:{difficulty}|size:{size}"
        assert task.bucket_values == {"difficulty": difficulty, "size": size}


def test_label_fallbacks_and_float_format() -> None:
    single = SingleTaskGenerator.Config(env={"x": 1})
    assert single.create().generate(0).label == "task"
    labelled = SingleTaskGenerator.Config(env={"x": 1}, label="mine")
    assert labelled.create().generate(0).label == "mine"
    gen = BucketedTaskGenerator.Config(
        child_generator_config=labelled, buckets={"a.b": [1e-07], "c": ["s"]}
    ).create()
    assert gen.generate(5).label == "mine|a.b:1e-07|c:s"
    for other in (3, 2.5, ["a"], {"name": "x"}):  # not a string: refused, not replaced
        with pytest.raises(ConfigError, match=r"env's 'label' is .* not a string"):
            SingleTaskGenerator.Config(env={"label": other}).create().generate(0)
        named = SingleTaskGenerator.Config(env={"label": other}, label="mine")
        assert named.create().generate(0).label == "mine"  # the config's own label


def test_nested_bucket_values_merge_outer_wins() -> None:
    inner = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "nav"}),
        buckets={"size": [1], "depth": [2]},
    )
    outer = BucketedTaskGenerator.Config(child_generator_config=inner, buckets={"size": [7]})
    task = outer.create().generate(11)
    assert task.env_cfg == {"label": "nav", "size": 7, "depth": 2}
    assert task.bucket_values == {"size": 7, "depth": 2}
    assert task.label == "nav|size:7|depth:2"


# --- sets ----------------------------------------------------------------------------------


def _single(label: str) -> SingleTaskGenerator.Config:
    return SingleTaskGenerator.Config(env={"label": label})


def test_weighted_set_respects_weights() -> None:
    cfg = TaskGeneratorSet.Config(
        generator_configs=[_single("a"), _single("zero"), _single("b")], weights=[0.8, 0.0, 0.2]
    )
    gen = cfg.create()
    labels = Counter(gen.generate(i).label for i in range(4000))
    assert labels["zero"] == 0
    assert 0.75 < labels["a"] / 4000 < 0.85
    assert labels["a"] + labels["b"] == 4000


def test_unweighted_set_uses_every_child() -> None:
    gen = TaskGeneratorSet.Config(generator_configs=[_single("a"), _single("b")]).create()
    labels = Counter(gen.generate(i).label for i in range(1000))
    assert 400 < labels["a"] < 600


# --- serialisation -------------------------------------------------------------------------


def test_json_round_trip_of_nested_config_with_model_env() -> None:
    cfg = nested_config()
    loaded = generator_config_from_json(cfg.model_dump_json())
    assert loaded == cfg
    assert isinstance(loaded.generator_configs[1].child_generator_config.env, EnvModel)
    assert isinstance(loaded.generator_configs[0].buckets["size"], Span)
    assert config_fingerprint(loaded) == config_fingerprint(cfg)
    gen, loaded_gen = cfg.create(), loaded.create()
    assert [gen.generate(i) for i in range(30)] == [loaded_gen.generate(i) for i in range(30)]


def test_config_usable_as_pydantic_field() -> None:
    class Holder(BaseModel):
        generator: AnyTaskGeneratorConfig

    holder = Holder(generator=nested_config())
    assert Holder.model_validate_json(holder.model_dump_json()) == holder
    assert Holder.model_validate(holder.model_dump()) == holder


def test_fingerprint_differs_for_different_configs() -> None:
    assert config_fingerprint(nav_config()) != config_fingerprint(nav_config(label="x"))
    assert config_fingerprint(nav_config()) == config_fingerprint(nav_config())


def test_bad_json_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        generator_config_from_json('{"type": "nope"}')


# --- overrides, model envs and invariants --------------------------------------------------


def test_overrides_on_dict_env() -> None:
    cfg = SingleTaskGenerator.Config(
        env={"game": {"num_agents": 2}}, overrides={"game.num_agents": 4, "game.map.width": 10}
    )
    env = cfg.create().generate(1).env_cfg
    assert env == {"game": {"num_agents": 4, "map": {"width": 10}}}
    assert cfg.env == {"game": {"num_agents": 2}}


def test_overrides_and_buckets_on_model_env() -> None:
    cfg = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env=EnvModel()),
        buckets={"game.num_agents": [3, 5]},
        overrides={"game.width": 40},
    )
    task = cfg.create().generate(8)
    assert isinstance(task.env_cfg, EnvModel)
    assert task.env_cfg.game.width == 40
    assert task.env_cfg.game.num_agents in (3, 5)
    assert task.label == f"arena|game.num_agents:{task.env_cfg.game.num_agents}"


def test_unknown_or_invalid_path_on_model_env_raises() -> None:
    typo = SingleTaskGenerator.Config(env=EnvModel(), overrides={"game.num_agent": 3})
    with pytest.raises(ConfigError, match=re.escape("game.num_agent")):
        typo.create().generate(0)
    bad = SingleTaskGenerator.Config(env=EnvModel(), overrides={"game.num_agents": "many"})
    with pytest.raises(ConfigError, match="many"):
        bad.create().generate(0)


def test_invariant_violation_names_id_path_and_values() -> None:
    cfg = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"game": {"num_agents": 2}}),
        buckets={"game.num_agents": [2, 4]},
        invariant_fields=["game.num_agents"],
    )
    gen = cfg.create()
    reference = gen.generate(0).env_cfg["game"]["num_agents"]
    other = 4 if reference == 2 else 2
    for task_id in range(1, 200):
        try:
            gen.generate(task_id)
        except InvariantViolationError as exc:
            message = str(exc)
            break
    else:
        pytest.fail("no task broke the invariant")
    assert str(task_id) in message
    assert "game.num_agents" in message
    assert str(reference) in message and str(other) in message


def test_invariant_holds_when_field_is_constant() -> None:
    cfg = nav_config(invariant_fields=["label"], overrides={"label": "fixed"})
    gen = cfg.create()
    assert all(gen.generate(i).env_cfg["label"] == "fixed" for i in range(200))


# --- invalid inputs ------------------------------------------------------------------------


def test_empty_bucket_list_names_path() -> None:
    with pytest.raises(ConfigError, match=re.escape("game.size")):
        BucketedTaskGenerator.Config(child_generator_config=_single("a"), buckets={"game.size": []})


def test_span_low_above_high_names_both() -> None:
    with pytest.raises(ConfigError) as info:
        Span(5, 3)
    assert "5" in str(info.value) and "3" in str(info.value)


@pytest.mark.parametrize("bad", [True, math.inf, math.nan, "1"])
def test_span_rejects_non_numbers(bad: Any) -> None:
    with pytest.raises(ConfigError):
        Span(bad, 10)


@pytest.mark.parametrize(
    "weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [math.nan, 1.0], [math.inf, 1.0], [1.0, 1.0, 1.0]]
)
def test_bad_weights(weights: list[float]) -> None:
    with pytest.raises(ConfigError):
        TaskGeneratorSet.Config(generator_configs=[_single("a"), _single("b")], weights=weights)


def test_empty_set_rejected() -> None:
    with pytest.raises(ConfigError):
        TaskGeneratorSet.Config(generator_configs=[])


@pytest.mark.parametrize("task_id", [-1, 2**53, True, 1.0, "3"])
def test_bad_task_ids(task_id: Any) -> None:
    gen = nav_config().create()
    with pytest.raises(ConfigError, match=re.escape(str(task_id))):
        gen.generate(task_id)


def test_bad_paths_rejected_at_config_time() -> None:
    with pytest.raises(ConfigError, match=re.escape("a..b")):
        SingleTaskGenerator.Config(env={}, overrides={"a..b": 1})


def test_env_must_be_dict_or_model() -> None:
    with pytest.raises(ConfigError):
        SingleTaskGenerator.Config(env=[1, 2])


# --- paths ---------------------------------------------------------------------------------


def test_get_path_mixed_nesting() -> None:
    cfg = {"arena": EnvModel(game=Game(num_agents=6))}
    assert get_path(cfg, "arena.game.num_agents") == 6
    assert get_path(EnvModel(), "game.width") == 16


def test_get_path_missing_segment_names_path_and_segment() -> None:
    with pytest.raises(ConfigError) as info:
        get_path({"game": {"num_agents": 2}}, "game.map.width")
    assert "game.map.width" in str(info.value) and "map" in str(info.value)
    with pytest.raises(ConfigError, match="nope"):
        get_path(EnvModel(), "game.nope")


def test_set_paths_does_not_mutate_dict() -> None:
    cfg = {"game": {"num_agents": 2}, "tags": ["a"]}
    new = set_paths(cfg, {"game.num_agents": 8, "extra.deep": 1})
    assert cfg == {"game": {"num_agents": 2}, "tags": ["a"]}
    assert new == {"game": {"num_agents": 8}, "tags": ["a"], "extra": {"deep": 1}}
    new["tags"].append("b")
    assert cfg["tags"] == ["a"]


def test_set_paths_on_model() -> None:
    cfg = EnvModel()
    new = set_paths(cfg, {"game.num_agents": 8})
    assert isinstance(new, EnvModel)
    assert new.game.num_agents == 8
    assert cfg.game.num_agents == 2
    with pytest.raises(ConfigError, match=re.escape("game.num_agents")) as info:
        set_paths(cfg, {"game.num_agents": "lots"})
    assert "lots" in str(info.value)


def test_set_paths_through_model_inside_dict() -> None:
    cfg = {"arena": EnvModel()}
    new = set_paths(cfg, {"arena.game.num_agents": 3})
    assert new["arena"].game.num_agents == 3
    assert cfg["arena"].game.num_agents == 2


def test_env_to_plain() -> None:
    assert env_to_plain(EnvModel())["game"] == {"num_agents": 2, "width": 16}
    cfg = {"a": {"b": 1}}
    plain = env_to_plain(cfg)
    plain["a"]["b"] = 2
    assert cfg == {"a": {"b": 1}}


def test_float_span_labels_show_bins_while_configs_keep_exact_values() -> None:
    gen = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "nav"}),
        buckets={"difficulty": Span(0.0, 1.0), "speed": Span(0.0, 2.0, bins=4)},
    ).create()
    labels, values = set(), set()
    for task_id in range(2000):
        task = gen.generate(task_id)
        difficulty, speed = task.env_cfg["difficulty"], task.env_cfg["speed"]
        values.add(difficulty)
        edge = format(int(difficulty * 10) / 10, ".3g")
        speed_edge = format(int(speed / 0.5) * 0.5, ".3g")
        assert task.label == f"nav|difficulty:{edge}|speed:{speed_edge}"
        labels.add(task.label)
    assert len(values) == 2000  # the configs keep exact values
    assert len(labels) <= 10 * 4  # labels stay bounded


@pytest.mark.parametrize(
    ("span", "first_edges"),
    [
        (Span(0.0, 1.0), ["0", "0.1", "0.2"]),
        (Span(100.0, 101.0), ["100", "100.1", "100.2"]),
        (Span(10.0, 10.5), ["10", "10.05", "10.1"]),
        (Span(10.0, 11.5), ["10", "10.15", "10.3"]),
        (Span(1000.0, 1010.0), ["1000", "1001", "1002"]),
        (Span(-5.0, 5.0, bins=4), ["-5", "-2.5", "0"]),
        (Span(0.0, 2e6, bins=4), ["0", "5e+05", "1e+06"]),
    ],
)
def test_each_float_bin_has_a_label_of_its_own_naming_its_lower_edge(
    span: Span, first_edges: list[str]
) -> None:
    """A bin's label is its lower edge, with the digits that tell it from its neighbours: bins
    whose edges agree in 3 significant digits (a mass from 100.0 to 101.0) are not merged, and
    no label names a value outside its bin."""
    width = (span.high - span.low) / span.bins
    labels = []
    for index in range(span.bins):
        edge = span.low + index * width
        inside = [span.label_for(edge + width * share) for share in (1e-6, 0.5, 1 - 1e-6)]
        assert len(set(inside)) == 1, inside
        assert math.isclose(float(inside[0]), edge, rel_tol=1e-9, abs_tol=1e-12)
        labels.append(inside[0])
    assert labels[:3] == first_edges
    assert len(set(labels)) == span.bins
    for index in range(span.bins):  # a value on an edge (as a range's grid point is) is its bin's
        assert (
            span.label_for(span.low + index * (span.high - span.low) / span.bins) == labels[index]
        )
        assert (
            span.label_for(span.low + index * ((span.high - span.low) / span.bins)) == labels[index]
        )
    assert [Span(0.0, 1.0).label_for(k / 10) for k in (3, 6, 7, 10)] == ["0.3", "0.6", "0.7", "0.9"]
