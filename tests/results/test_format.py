"""Values of the results store: run ids as stable hashes of the canonical config."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from calikd.errors import ConfigError
from calikd.results import (
    run_id_for,
)


def test_run_id_is_a_stable_hash_of_the_canonical_config(tmp_path: Path) -> None:
    config = {"b": [1, 2], "a": 1}
    assert run_id_for(config) == hashlib.sha256(b'{"a":1,"b":[1,2]}').hexdigest()[:16]
    assert run_id_for({"a": 1, "b": (1, 2)}) == run_id_for(config)  # key order, tuple vs list
    assert run_id_for({"a": np.int64(1), "b": [torch.tensor(1), 2]}) == run_id_for(config)
    assert run_id_for({"a": 1.0, "b": [1, 2]}) != run_id_for(config)  # types count
    assert run_id_for({"p": tmp_path}) == run_id_for({"p": str(tmp_path)})
    for bad in ({"a": math.nan}, {1: "x"}, {"a": object()}):
        with pytest.raises(ConfigError):
            run_id_for(bad)
    with pytest.raises(ConfigError, match="mapping"):
        run_id_for([1, 2])  # type: ignore[arg-type]
