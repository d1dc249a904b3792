"""``--precision auto``: the probe's choice is deterministic given its timings, cached, never overrides a
forced precision, keeps a resumed run's path, and changes neither the model nor any seeded draw."""

from __future__ import annotations

import json

import pytest
import torch

from calikd.engine import probe_cache
from calikd.engine.precision import (
    MARGIN,
    PROBE_MIN_STEPS,
    choose_fastest,
    measure,
    precision_candidates,
    select_precision,
)
from calikd.models import create_model
from calikd.utils.device import PRECISIONS, Precision

CPU = torch.device("cpu")


def fake_timer(seconds: dict[str, float], calls: list[str] | None = None):
    def timer(precision: Precision) -> float:
        if calls is not None:
            calls.append(precision.name)
        return seconds[precision.name]

    return timer


def select(model, timer=None, *, requested="auto", steps=PROBE_MIN_STEPS, resumed=None):
    return select_precision(
        requested,
        CPU,
        model,
        input_shape=(1, 28, 28),
        num_classes=10,
        batch_size=8,
        total_steps=steps,
        model_key={"name": "test", "kwargs": {}},
        resumed=resumed,
        timer=timer,
    )


def test_choose_fastest_walks_the_order_with_a_margin() -> None:
    order = ("fp32", "fp32-cl", "bf16")
    assert choose_fastest({"fp32": 1.0, "fp32-cl": 0.5}, order) == "fp32-cl"
    assert choose_fastest({"fp32": 1.0, "fp32-cl": 1.0 - MARGIN / 2}, order) == "fp32"  # within the margin
    assert choose_fastest({"fp32": 1.0, "fp32-cl": 1.5}, order) == "fp32"
    assert choose_fastest({"fp32": 1.0, "fp32-cl": 0.8, "bf16": 0.79}, order) == "fp32-cl"
    assert choose_fastest({"fp32": 1.0, "fp32-cl": 0.8, "bf16": 0.5}, order) == "bf16"
    assert choose_fastest({"fp32-cl": 2.0, "bf16": 1.0}, order) == "bf16"  # absent candidates skipped
    with pytest.raises(ValueError):
        choose_fastest({}, order)


def test_measure_interleaves_rounds_and_keeps_the_best() -> None:
    calls: list[str] = []
    values = iter([3.0, 2.0, 1.0, 4.0, 2.5, 5.0])

    def timer(precision: Precision) -> float:
        calls.append(precision.name)
        return next(values)

    seconds = measure(["fp32", "fp32-cl"], timer, rounds=3)
    assert calls == ["fp32", "fp32-cl"] * 3
    assert seconds == {"fp32": 1.0, "fp32-cl": 2.0}


def test_candidates_follow_the_hardware_and_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import calikd.engine.precision as precision_module

    monkeypatch.setattr(precision_module, "fast_bf16", lambda _device: False)
    assert precision_candidates(CPU, create_model("cnn_tiny", 10, 1)) == ("fp32", "fp32-cl")
    assert precision_candidates(CPU, create_model("mlp", 10, 1)) == ("fp32",)
    monkeypatch.setattr(precision_module, "fast_bf16", lambda _device: True)
    assert precision_candidates(CPU, create_model("cnn_tiny", 10, 1)) == ("fp32", "fp32-cl", "bf16")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [({"fp32": 1.0, "fp32-cl": 0.6}, "fp32-cl"), ({"fp32": 0.6, "fp32-cl": 1.0}, "fp32")],
)
def test_probe_picks_by_the_injected_timings(seconds: dict[str, float], expected: str, monkeypatch) -> None:
    import calikd.engine.precision as precision_module

    monkeypatch.setattr(precision_module, "fast_bf16", lambda _device: False)
    choice = select(create_model("cnn_tiny", 10, 1), fake_timer(seconds))
    assert choice.name == expected and choice.source == "probed"
    assert choice.precision is PRECISIONS[expected]
    assert set(choice.images_per_s) == {"fp32", "fp32-cl"}
    assert choice.images_per_s[expected] == pytest.approx(8 / seconds[expected])
    assert choice.describe()["chosen"] == expected and expected in choice.line()


@pytest.mark.parametrize("forced", ["fp32", "fp32-cl", "bf16"])
def test_a_forced_precision_is_never_overridden(forced: str) -> None:
    def timer(_precision: Precision) -> float:
        raise AssertionError("a forced precision must not be measured")

    choice = select(create_model("cnn_tiny", 10, 1), timer, requested=forced, steps=10**6)
    assert choice.name == forced and choice.source == "forced"


def test_a_resumed_run_keeps_its_path_and_short_runs_are_not_measured() -> None:
    def timer(_precision: Precision) -> float:
        raise AssertionError("no measurement expected")

    model = create_model("cnn_tiny", 10, 1)
    resumed = select(model, timer, resumed="fp32-cl", steps=10**6)
    assert (resumed.name, resumed.source) == ("fp32-cl", "resumed")
    short = select(model, timer, steps=PROBE_MIN_STEPS - 1)
    assert short.source == "static" and short.name in ("fp32", "bf16")


def test_tf32_is_refused_on_cpu() -> None:
    from calikd.errors import ConfigError

    with pytest.raises(ConfigError, match="CUDA"):
        select(create_model("cnn_tiny", 10, 1), requested="tf32")


def test_real_probe_is_cached_and_leaves_model_and_random_state_alone(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "probes.json"
    monkeypatch.setenv("CALIKD_PROBE_CACHE", str(cache))
    monkeypatch.setattr(probe_cache, "busy_load", lambda: None)
    model = create_model("cnn_tiny", 10, 1)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = select(model)
    assert torch.equal(torch.rand(3), expected_draw)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert first.source == "probed" and first.name in precision_candidates(CPU, model)
    assert all(v > 0 for v in first.images_per_s.values())
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 1
    (entry,) = entries.values()
    assert entry["key"]["machine"]["cpu"] == probe_cache.cpu_model()
    assert entry["key"]["batch_size"] == 8 and entry["key"]["input_shape"] == [1, 28, 28]

    def timer(_precision: Precision) -> float:
        raise AssertionError("the cached choice must be reused")

    again = select_precision(
        "auto",
        CPU,
        model,
        input_shape=(1, 28, 28),
        num_classes=10,
        batch_size=8,
        total_steps=PROBE_MIN_STEPS,
        model_key={"name": "test", "kwargs": {}},
    )
    assert (again.name, again.source) == (first.name, "cached")
    other_batch = select_precision(
        "auto",
        CPU,
        model,
        input_shape=(1, 28, 28),
        num_classes=10,
        batch_size=4,
        total_steps=PROBE_MIN_STEPS,
        model_key={"name": "test", "kwargs": {}},
    )
    assert other_batch.source == "probed"  # another key
    assert len(json.loads(cache.read_text())["entries"]) == 2


def test_damaged_or_disabled_cache_is_ignored(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "probes.json"
    cache.write_text("{not json")
    monkeypatch.setenv("CALIKD_PROBE_CACHE", str(cache))
    monkeypatch.setattr(probe_cache, "busy_load", lambda: None)
    assert probe_cache.lookup("precision", {"a": 1}) is None
    probe_cache.remember("precision", {"a": 1}, {"chosen": "fp32"})
    assert probe_cache.lookup("precision", {"a": 1}) == {"chosen": "fp32"}
    monkeypatch.setenv("CALIKD_PROBE_CACHE", "off")
    assert probe_cache.cache_file() is None and probe_cache.lookup("precision", {"a": 1}) is None
    probe_cache.remember("precision", {"b": 1}, {"chosen": "fp32"})  # nothing written, no error


def test_a_measurement_on_a_busy_machine_is_not_remembered(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CALIKD_PROBE_CACHE", str(tmp_path / "probes.json"))
    monkeypatch.setattr(probe_cache, "busy_load", lambda: 9.5)
    assert not probe_cache.remember("precision", {"a": 1}, {"chosen": "fp32"})
    assert probe_cache.lookup("precision", {"a": 1}) is None
    monkeypatch.undo()
    import os as _os

    monkeypatch.setattr(_os, "getloadavg", lambda: (3.0 * (_os.cpu_count() or 1), 0.0, 0.0))
    assert probe_cache.busy_load() == pytest.approx(3.0 * (_os.cpu_count() or 1))
    monkeypatch.setattr(_os, "getloadavg", lambda: (0.5, 0.0, 0.0))
    assert probe_cache.busy_load() is None


def test_a_pinned_file_keeps_the_first_measurement_even_on_a_busy_machine(tmp_path, monkeypatch) -> None:
    machine = tmp_path / "machine.json"
    sweep = tmp_path / "sweep" / "speed-probes.json"
    monkeypatch.setenv("CALIKD_PROBE_CACHE", str(machine))
    monkeypatch.setattr(probe_cache, "busy_load", lambda: 9.5)
    choices = []
    for measured in ["fp32", "fp32-cl", "fp32-cl"]:  # what a busy machine's timings pick, run by run
        with probe_cache.pinned(sweep), probe_cache.exclusive():  # as select_precision does
            stored = probe_cache.lookup("precision", {"run": "key"})
            if stored is None:
                assert not probe_cache.remember("precision", {"run": "key"}, {"chosen": measured})
                stored = {"chosen": measured}
        choices.append(stored["chosen"])
    assert choices == ["fp32", "fp32", "fp32"]  # the sweep's runs share its first measurement
    assert probe_cache.lookup("precision", {"run": "key"}) is None  # busy: the machine's file took nothing
    assert (sweep.parent / "speed-probes.json.lock").exists()
    monkeypatch.setattr(probe_cache, "busy_load", lambda: None)
    probe_cache.remember("precision", {"other": 1}, {"chosen": "fp32-cl"})  # remembered by the machine
    second = tmp_path / "second.json"
    with probe_cache.pinned(second):
        assert probe_cache.lookup("precision", {"other": 1}) == {"chosen": "fp32-cl"}  # and pinned
    machine.write_text("{}")  # the machine's file changes: the second sweep keeps what it took
    with probe_cache.pinned(second):
        assert probe_cache.lookup("precision", {"other": 1}) == {"chosen": "fp32-cl"}
    assert probe_cache.lookup("precision", {"other": 1}) is None
    with probe_cache.pinned(None), probe_cache.exclusive():  # unpinned: no file, no lock
        assert probe_cache.lookup("precision", {"run": "key"}) is None


def test_two_processes_pinned_to_one_file_measure_once(tmp_path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    sweep = tmp_path / "speed-probes.json"
    barrier, picks = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_pinned_pick, args=(str(sweep), measured, barrier, picks))
        for measured in ("fp32", "fp32-cl")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    first, second = picks.get(timeout=5), picks.get(timeout=5)
    assert first == second  # both took one measurement: the second waited for the lock, then read it
    assert len(json.loads(sweep.read_text())["entries"]) == 1


def _pinned_pick(sweep: str, measured: str, barrier, picks) -> None:
    import os
    import time

    os.environ["CALIKD_PROBE_CACHE"] = "off"
    barrier.wait()  # both processes reach the lock together
    with probe_cache.pinned(sweep), probe_cache.exclusive():
        stored = probe_cache.lookup("precision", {"run": "key"})
        if stored is None:
            time.sleep(0.5)  # a measurement: the other process waits on the lock
            probe_cache.remember("precision", {"run": "key"}, {"chosen": measured})
            picks.put(measured)
            return
        picks.put(stored["chosen"])
