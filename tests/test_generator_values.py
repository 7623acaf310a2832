"""Bucket values that users write in many forms: Spans inside lists, integer spans with many
values, tuples, and env values that cannot cross processes (sets, objects, bytes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from curriculum.errors import ConfigError
from curriculum.generators import (
    BucketedTaskGenerator,
    SingleTaskGenerator,
    Span,
    config_fingerprint,
    generator_config_from_json,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def bucketed(buckets: dict[str, Any], env: Any = None) -> BucketedTaskGenerator.Config:
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env=env or {"label": "t"}),
        buckets=buckets,
    )


# -- a Span inside a list of values is sampled ---------------------------------------------------


def test_span_inside_a_list_is_drawn_from_its_range() -> None:
    gen = bucketed({"objects": [Span(3, 50)], "p": [0, Span(0.0, 1.0)]}).create()
    objects, ps = [], []
    for task_id in range(2000):
        env = gen.generate(task_id).env_cfg
        objects.append(env["objects"])
        ps.append(env["p"])
    assert all(type(v) is int and 3 <= v <= 50 for v in objects)
    assert len(set(objects)) == 48  # every value of the range shows up
    zeros = sum(1 for p in ps if p == 0 and type(p) is int)
    floats = [p for p in ps if type(p) is float]
    assert zeros + len(floats) == len(ps)
    assert 800 < zeros < 1200  # the list picks one entry uniformly
    assert all(0.0 <= p < 1.0 for p in floats) and len(set(floats)) > 900


def test_span_inside_a_list_is_deterministic_and_labelled_like_a_span() -> None:
    config = bucketed({"p": [0, Span(0.0, 1.0)]})
    first, second = config.create(), config.create()
    for task_id in range(200):
        a, b = first.generate(task_id), second.generate(task_id)
        assert a.env_cfg == b.env_cfg and a.label == b.label
        value = a.env_cfg["p"]
        expected = "0" if type(value) is int else Span(0.0, 1.0).label_for(value)
        assert a.label == f"t|p:{expected}"


def test_span_inside_a_list_round_trips_through_json() -> None:
    config = bucketed({"objects": [Span(3, 50, bins=5), 7, {"low": 1, "high": 2}]})
    again = generator_config_from_json(config.model_dump_json())
    assert again == config
    assert config_fingerprint(again) == config_fingerprint(config)
    gen, gen_again = config.create(), again.create()
    values = [gen.generate(i).env_cfg["objects"] for i in range(300)]
    assert values == [gen_again.generate(i).env_cfg["objects"] for i in range(300)]
    assert {"low": 1, "high": 2} in values  # a plain dict value stays a plain dict
    assert not any(isinstance(v, Span) for v in values)


def test_lists_without_spans_draw_the_same_values_as_before() -> None:
    # A pool created before Spans were allowed in lists must keep its tasks' configs.
    gen = bucketed({"d": [0.1, 0.5, 0.9], "size": Span(8, 32)}).create()
    assert [gen.generate(i).env_cfg for i in range(3)] == [
        {"label": "t", "d": 0.5, "size": 20},
        {"label": "t", "d": 0.1, "size": 18},
        {"label": "t", "d": 0.9, "size": 32},
    ]


# -- labels are bounded by construction ----------------------------------------------------------


def test_integer_span_with_many_values_is_binned_in_labels() -> None:
    span = Span(0, 100_000)
    gen = bucketed({"seed": span}).create()
    labels = Counter(gen.generate(i).label for i in range(5000))
    assert len(labels) <= span.bins
    for task_id in range(200):
        task = gen.generate(task_id)
        seed = task.env_cfg["seed"]
        edge = int(task.label.rpartition(":")[2])
        assert edge <= seed < edge + 10_001  # the bin's lower edge, bins of equal width
        assert edge % 10_001 == 0


def test_integer_bins_edges_and_small_spans_keep_exact_values() -> None:
    assert Span(8, 32).label_for(17) == "17"  # 25 values: each value is its own label
    assert Span(0, 99).label_for(57) == "57"  # 100 values: still exact
    wide = Span(0, 100, bins=4)  # 101 values: 4 bins of 26 values
    assert [wide.label_for(v) for v in (0, 25, 26, 51, 52, 77, 78, 100)] == [
        "0",
        "0",
        "26",
        "26",
        "52",
        "52",
        "78",
        "78",
    ]
    assert Span(-5, 1000, bins=2).label_for(-5) == "-5"
    assert Span(-5, 1000, bins=2).label_for(1000) == "498"


# -- forms that used to be accepted silently -----------------------------------------------------


def test_tuple_of_bucket_values_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"'size'.*tuple \(8, 32\).*Span\(8, 32\).*\[8, 32\]"):
        bucketed({"size": (8, 32)})


def test_mixed_int_and_float_span_draws_floats_as_documented() -> None:
    gen = bucketed({"x": Span(8, 32.0)}).create()
    values = [gen.generate(i).env_cfg["x"] for i in range(100)]
    assert all(type(v) is float and 8.0 <= v < 32.0 for v in values)


# -- env values that cannot cross processes ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({"a", "b"}, "set"), (frozenset({1}), "frozenset"), (b"map", "bytes"), (object(), "object")],
)
def test_values_that_do_not_cross_processes_are_refused(value: Any, type_name: str) -> None:
    with pytest.raises(ConfigError, match=rf"env\.game\.tags.*{type_name}"):
        SingleTaskGenerator.Config(env={"game": {"tags": value}})
    with pytest.raises(ConfigError, match=rf"overrides\['game\.tags'\].*{type_name}"):
        SingleTaskGenerator.Config(env={}, overrides={"game.tags": value})
    with pytest.raises(ConfigError, match=rf"buckets\['game\.tags'\]\[1\].*{type_name}"):
        bucketed({"game.tags": [1, value]})


def test_a_lambda_in_an_env_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"env\.reward_fn.*function"):
        SingleTaskGenerator.Config(env={"reward_fn": lambda x: x})


_FINGERPRINT_SCRIPT = textwrap.dedent(
    """
    import sys
    from curriculum.errors import ConfigError
    from curriculum.generators import SingleTaskGenerator, config_fingerprint
    env = {"game": {"names": ["alpha", "beta", "gamma", "delta"], "size": 8}}
    print(config_fingerprint(SingleTaskGenerator.Config(env=env)))
    try:
        SingleTaskGenerator.Config(env={"tags": {"alpha", "beta", "gamma", "delta"}})
        print("accepted")
    except ConfigError as exc:
        print("refused:", exc)
    """
)


def test_fingerprints_agree_between_processes_with_different_hash_seeds() -> None:
    outputs = []
    for hash_seed in ("1", "2", "3"):
        result = subprocess.run(
            [sys.executable, "-c", _FINGERPRINT_SCRIPT],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=True,
        )
        outputs.append(result.stdout.splitlines())
    assert outputs[0][0] == outputs[1][0] == outputs[2][0]  # the same fingerprint
    assert all(out[1].startswith("refused:") and "env.tags is a set" in out[1] for out in outputs)
