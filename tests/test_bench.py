"""``d2lconv bench --quick`` runs on the backend under test and prints its tables (numbers are
never asserted: these machines are shared and noisy)."""

import json
import os
import subprocess
import sys
from statistics import median

import pytest

import d2lconv

from conftest import BACKEND
from d2lconv import bench

TRAINS = BACKEND != "numpy"  # the NumPy reference backend is forward-only


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ, D2LCONV_BACKEND=BACKEND)
    done = subprocess.run([sys.executable, "-m", "d2lconv", "bench", "--quick", "--no-keras", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def test_prints_every_part_for_the_backend(quick_run):
    text, _ = quick_run
    assert f"=== {BACKEND} ===" in text
    assert "corr2d against a Python loop" in text
    assert "input  kernel  d2lconv us  loop us  speedup  by round" in text
    if TRAINS:
        assert "d2lconv/native" in text and "no backend chosen" in text
        for op in ("conv2d", "max_pool", "avg_pool"):
            assert sum(line.split()[:2] in ([op, "1"], [op, "256"]) for line in text.splitlines()) >= 2, op
        assert "Trainer/this" in text and bench.TRAINER in text
        assert "interleaved rounds, each fit in a fresh process" in text
    else:
        assert "operator overhead: skipped" in text and "LeNet training: skipped" in text
        assert "LeNet training in fresh processes: skipped" in text


def _within(ratio, by_round):
    """A ratio of medians lies between the lowest and highest ratio of one round (a median is
    monotone: a_i >= r * b_i for every round gives median(a) >= r * median(b)), up to rounding."""
    return min(by_round) * (1 - 1e-9) <= ratio <= max(by_round) * (1 + 1e-9)


def test_json_has_a_row_per_measurement(quick_run):
    _, report = quick_run
    assert report["machine"]["cpus"] >= 1
    result = report["backends"][BACKEND]
    assert [r["input"] for r in result["corr2d"]] == ["6x8"]
    for row in result["corr2d"]:  # the speed-up is the loop's time over d2lconv's, round by round
        assert row["speedup"] == pytest.approx(median(row["speedup_by_round"]))
        assert _within(row["loop_us"] / row["d2lconv_us"], row["speedup_by_round"]), row
    if TRAINS:
        assert {(r["op"], r["batch"]) for r in result["ops"]} == {(op, n) for op in ("conv2d", "max_pool", "avg_pool") for n in (1, 256)}
        for row in result["ops"]:  # d2lconv's time over the framework's, round by round
            assert row["ratio"] == pytest.approx(median(row["ratio_by_round"])), row
            assert _within(row["d2lconv_us"] / row["native_us"], row["ratio_by_round"]), row
        variants = [r["variant"] for r in result["training"]]
        assert variants[0] == bench.TRAINER and len(variants) >= 2
        # where the Trainer compiles only long runs, the compiled Trainer is measured too
        assert (bench.TRAINER_COMPILED in variants) == bool(d2lconv.backend.load(BACKEND).compile_pays_after)
        for part in ("training", "fresh"):
            for row in result[part]:
                assert row["img_per_s"] > 0 and row["loss"] > 0, row
                rounds = [] if row["variant"] == bench.TRAINER else [
                    this["total_s"] / trainer["total_s"] for trainer, this in zip(result[part][0]["runs"], row["runs"])]
                assert row["trainer_over_this_by_round"] == pytest.approx(rounds), row
        # every fit again, each in its own process (Keras left out here: --no-keras)
        loops = list(bench.native_module(BACKEND).training_loops())
        assert [r["variant"] for r in result["fresh"]] == [bench.TRAINER, *loops]


def test_keras_fit_runs_on_the_backends_framework():
    native = bench.native_module(BACKEND)
    reason = bench.keras_skip_reason(native)
    if reason:
        pytest.skip(f"no Keras comparison on {BACKEND}: {reason}")
    result = bench.keras_fit(native.KERAS_BACKEND, 32, bench.QUICK)
    assert "skipped" not in result, result
    assert result["keras_backend"] == native.KERAS_BACKEND
    assert len(result["epoch_s"]) == bench.QUICK.epochs and 0 < result["loss"] < 10, result


def test_a_missing_backend_is_skipped_with_the_reason(capsys, monkeypatch):
    monkeypatch.setattr(bench.d2lconv, "available_backends", lambda: ["numpy"])
    result = bench.bench_backend("mxnet", bench.QUICK, {"ops"})
    assert result == {"skipped": 'skipped: mxnet is not installed here (pip install "d2lconv[mxnet]")'}
    assert 'mxnet is not installed here (pip install "d2lconv[mxnet]")' in capsys.readouterr().out


def test_bad_options_are_refused():
    done = subprocess.run([sys.executable, "-m", "d2lconv", "bench", "--batch-sizes", "0"], capture_output=True, text=True)
    assert done.returncode != 0 and "--batch-sizes must be positive, got [0]" in done.stderr


def test_an_unknown_backend_is_refused():
    done = subprocess.run([sys.executable, "-m", "d2lconv", "bench", "--backend", "caffe"], capture_output=True, text=True)
    assert done.returncode != 0 and "d2lconv bench: --backend: unknown backend 'caffe'" in done.stderr
