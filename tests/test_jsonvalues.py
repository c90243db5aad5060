"""The one JSON rule of result files: plain numbers, non-finite floats as "inf"/"-inf"/"nan"."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ising_qubo.io.jsonvalues import dumps, read_float, to_json, to_plain, write_json


def test_non_finite_floats_become_their_names():
    assert to_json(math.inf) == "inf"
    assert to_json(-math.inf) == "-inf"
    assert to_json(math.nan) == "nan"
    assert to_json(np.float32("inf")) == "inf"
    assert to_json(np.float64("-inf")) == "-inf"
    assert to_json(np.float32("nan")) == "nan"
    assert to_json(1.5) == 1.5 and to_json(0.0) == 0.0 and to_json(-2) == -2


def test_numpy_values_become_python_values_of_the_same_value():
    value = to_json(np.float32(0.1))
    assert type(value) is float and value == float(np.float32(0.1))
    value = to_json(np.int64(2**40 + 1))
    assert type(value) is int and value == 2**40 + 1
    assert to_json(np.bool_(True)) is True
    assert to_json(np.array([[1, 2], [3, 4]], dtype=np.int16)) == [[1, 2], [3, 4]]
    assert to_json(np.array([1.0, np.inf, -np.inf, np.nan])) == [1.0, "inf", "-inf", "nan"]


def test_nested_containers_and_keys():
    value = {
        "a": [1.0, (np.int64(3), math.inf)],
        7: {"b": np.float32(-np.inf)},
        "c": None,
        "d": "inf text",
        "e": [np.nan, {"f": np.array([np.nan])}],
    }
    assert to_json(value) == {
        "a": [1.0, [3, "inf"]],
        "7": {"b": "-inf"},
        "c": None,
        "d": "inf text",
        "e": ["nan", {"f": ["nan"]}],
    }


def test_plain_keeps_non_finite_floats_for_checkpoints():
    value = to_plain({"x": (np.float64(np.inf), np.float32(np.nan)), "y": np.arange(2)})
    assert value["x"][0] == math.inf and math.isnan(value["x"][1])
    assert type(value["x"][1]) is float and value["y"] == [0, 1]


def test_dumps_is_strict_json_and_round_trips_through_read_float():
    text = dumps({"t": [0.5, math.inf], "u": -math.inf, "v": math.nan})
    assert "Infinity" not in text and "NaN" not in text
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"literal {name}"))
    assert read_float(data["t"][0]) == 0.5
    assert read_float(data["t"][1]) == math.inf
    assert read_float(data["u"]) == -math.inf
    assert math.isnan(read_float(data["v"]))


def test_read_float_takes_null_numbers_and_refuses_other_values():
    assert read_float(None) is None
    assert read_float(None, missing=math.inf) == math.inf  # e.g. "never reached"
    assert read_float(3) == 3.0 and type(read_float(3)) is float
    assert read_float("INF") == math.inf
    for bad in ("fast", True, [1.0], {}):
        with pytest.raises(ValueError, match="expected a number, 'inf', '-inf', 'nan' or null"):
            read_float(bad)


def test_write_json_is_atomic_on_an_unserialisable_value(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"energy": np.float64(-3.5), "bound": -math.inf})
    assert json.loads(path.read_text()) == {"energy": -3.5, "bound": "-inf"}
    assert path.read_text().endswith("}\n")
    with pytest.raises(TypeError):
        write_json(path, {"energy": object()})
    assert json.loads(path.read_text()) == {"energy": -3.5, "bound": "-inf"}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
