"""pack_tree / unpack_tree: exact round trips, fixed skeletons, clear errors."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, OrderedDict, defaultdict

import numpy as np
import pytest
import torch

from calikd.store import pack_tree, unpack_tree
from calikd.utils.tensor_files import deserialize_tensors, serialize_tensors


def _through_disk(obj):
    """pack -> safetensors bytes + strict JSON -> unpack, as a checkpoint does."""
    tensors, skeleton = pack_tree(obj)
    text = json.dumps(skeleton, allow_nan=False)  # the skeleton is standard JSON
    return unpack_tree(deserialize_tensors(serialize_tensors(tensors), None), json.loads(text))


def test_fixed_skeleton() -> None:
    t = torch.tensor([1.0, 2.0])
    obj = {"a": 1, 2: (1.5, None), "t": t, "n": [math.nan, math.inf, -math.inf], "b": True, "s": "x"}
    tensors, skeleton = pack_tree(obj)
    assert list(tensors) == ["t"] and torch.equal(tensors["t"], t)
    assert skeleton == {
        "dict": [
            ["a", 1],
            [2, {"tuple": [1.5, None]}],
            ["t", {"tensor": "t"}],
            ["n", [{"float": "nan"}, {"float": "inf"}, {"float": "-inf"}]],
            ["b", True],
            ["s", "x"],
        ]
    }


def test_tensor_names_follow_paths_and_stay_unique() -> None:
    t = torch.zeros(1)
    tensors, _ = pack_tree(
        {"state": {0: {"exp_avg": t}}, "state.0.exp_avg": torch.ones(1), "__metadata__": t + 2}
    )
    assert list(tensors) == ["state.0.exp_avg", "state.0.exp_avg#2", "__metadata__#2"]
    assert list(pack_tree(t)[0]) == ["root"]


def test_round_trip_of_every_supported_kind(tree_equal) -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    obj = {
        "ints": [0, -1, 2**70, -(2**63)],
        "floats": [0.1, -0.0, 1e308, 5e-324, 2.0, math.inf, -math.inf],
        "flags": (True, False, None),
        "keys": {0: "int", "0": "str", True: "bool", None: "none", 1.5: "float", (1, "a"): "tuple"},
        "empty": [[], (), {}, OrderedDict(), Counter(), ""],
        "counter": Counter({4: 2, 2: 1}),
        "ordered": OrderedDict([("z", 1), ("a", 2)]),
        "nested": [{"x": ({"y": [1, (2, 3)]},)}],
        "tensors": {
            "f32": torch.randn(2, 3),
            "bf16": torch.randn(4).bfloat16(),
            "f16": torch.randn(4).half(),
            "f64": torch.tensor([math.nan, -math.inf, 1e-310], dtype=torch.float64),
            "i64": torch.tensor([-(2**63), 2**63 - 1]),
            "u8": torch.tensor([0, 255], dtype=torch.uint8),
            "bool": torch.tensor([True, False]),
            "f8": torch.randn(5).to(torch.float8_e4m3fn),
            "c64": torch.randn(3, dtype=torch.complex64),
            "scalar": torch.tensor(3.5),
            "empty": torch.zeros(0, 3),
            "noncontig": base.t(),
            "view": base[1],
            "rng": torch.get_rng_state(),
            "gen": torch.Generator().manual_seed(7).get_state(),
        },
    }
    got = _through_disk(obj)
    tree_equal(got, obj)
    assert math.copysign(1.0, got["floats"][1]) == -1.0
    assert type(got["counter"]) is Counter and got["counter"][4] == 2


def test_nan_float_round_trips() -> None:
    got = _through_disk({"x": math.nan})
    assert math.isnan(got["x"]) and type(got["x"]) is float


def test_same_tensor_twice_is_stored_once_and_aliased() -> None:
    t = torch.randn(3)
    tensors, skeleton = pack_tree({"a": t, "b": [t]})
    assert list(tensors) == ["a"]
    got = unpack_tree(tensors, skeleton)
    assert got["a"] is got["b"][0]


def test_subclasses_are_stored_by_value() -> None:
    got = _through_disk(
        {"f": np.float64(0.25), "size": torch.Size([2, 3]), "p": torch.nn.Parameter(torch.ones(2))}
    )
    assert type(got["f"]) is float and got["f"] == 0.25
    assert got["size"] == (2, 3) and type(got["size"]) is tuple
    assert type(got["p"]) is torch.Tensor and not got["p"].requires_grad


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"a": [1, object()]}, "root['a'][1]"),
        ({"opt": {"state": {0: {"step": np.int64(3)}}}}, "root['opt']['state'][0]['step']"),
        ({"s": {1, 2}}, "root['s']"),
        ({"d": defaultdict(list)}, "root['d']"),
        ({"c": torch.zeros(2, dtype=torch.complex128)}, "root['c']"),
        ({"sp": torch.eye(2).to_sparse()}, "root['sp']"),
        ({"f": lambda x: x}, "root['f']"),
    ],
)
def test_unsupported_values_name_their_path(obj, where: str) -> None:
    with pytest.raises(TypeError, match="at " + re.escape(where)):
        pack_tree(obj)


def test_cycles_and_tensor_keys_are_refused() -> None:
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(TypeError, match="contains itself"):
        pack_tree({"x": loop})
    t = torch.zeros(1)
    with pytest.raises(TypeError, match="dict key"):
        pack_tree({t: 1})


@pytest.mark.parametrize(
    "skeleton",
    [
        {"tensor": "missing"},
        {"what": 1},
        {"float": "NaN?"},
        {"dict": [[1]]},
        {"dict": [[[1, 2], 3]]},
        {"dict": [], "type": "defaultdict"},
    ],
)
def test_malformed_skeletons_raise_value_error(skeleton) -> None:
    with pytest.raises(ValueError, match="malformed skeleton"):
        unpack_tree({}, skeleton)
