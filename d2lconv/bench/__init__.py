"""``d2lconv bench``: what the d2lconv layer costs against each framework's own code.

Four measurements per backend, each interleaved (alternate blocks of the d2lconv side and the
native side, every other round in reverse order), reported as medians with ratios:

1. operator overhead: ``conv2d`` and ``pool2d`` (max, avg) against the framework's own call, with
   the backend chosen by ``set_backend`` and, in a fresh subprocess, with no backend chosen at
   all (a first-time user's path);
2. ``corr2d`` against a Python double loop over the output cells, as the book writes it;
3. LeNet training throughput: ``Trainer.fit`` against the best hand-written loop of the framework
   (one ``native_<framework>`` module each), over the same in-memory NumPy batches, with peak
   memory, all in one process;
4. the same fits as a user's script runs them, each in a fresh process (its framework imported
   before the clock starts, its first use and compilation inside), with Keras 3 ``model.fit`` on
   the same backend where Keras is installed.

A framework is imported only when its backend is benchmarked; a missing one is skipped with the
reason printed. A ``native_<framework>`` module gives ``PACKAGES`` (whose versions are printed),
``KERAS_BACKEND`` (or None), ``OPS_LAYOUT`` (a line saying what the native operator calls are, or
None), ``to_native(array)`` and ``sync(tensor)`` as a user of that framework would write them,
``operator_calls(X, W, P)`` (zero-argument calls of its own conv2d, max and avg pooling on those
NumPy inputs; ``NCHW_OPS_LAYOUT``, ``nchw_operator_calls`` and ``nchw_skip_reason()`` too where
the framework's preferred layout is not the contract's NCHW, to show what the layout costs apart
from d2lconv), the
Python-loop helpers of :mod:`d2lconv.bench.loop`, and ``training_loops()``:
``{name: (description, fit)}`` with ``fit(batches, val, epochs, lr, mark)`` as
:func:`timed_fit` calls it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

import d2lconv
from d2lconv import backend
from d2lconv.bench.loop import python_loop_corr2d
from d2lconv.bench.timing import PeakMemory, calls_per_block, interleave, median, per_call_block, table
from d2lconv.data import ValidationBatches

LR = 0.1
RESULT_MARK = "D2LCONV-BENCH-RESULT "
TRAINER = "d2lconv Trainer.fit"
#: where compiling is the Trainer's choice (torch: only for long runs), also measured compiled
TRAINER_COMPILED = "d2lconv Trainer.fit(compile=True)"
KERAS = "keras model.fit"
PARTS = ("ops", "corr2d", "train", "fresh")
#: environment variables that set the frameworks' thread counts, printed when set
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "XLA_FLAGS")


@dataclass(frozen=True)
class Settings:
    op_batch_sizes: tuple = (1, 256)
    op_rounds: int = 11
    op_block_s: float = 0.05
    corr2d_cases: tuple = ((6, 8, 1, 2), (28, 28, 5, 5))  # X height, width, K height, width
    corr2d_rounds: int = 5
    train_batch_sizes: tuple = (32, 256)
    train_size: int = 10_240
    val_size: int = 1_024
    epochs: int = 3
    train_rounds: int = 3
    keras: bool = True


QUICK = Settings(op_rounds=3, op_block_s=0.005, corr2d_cases=((6, 8, 1, 2),), corr2d_rounds=1,
                 train_batch_sizes=(32,), train_size=128, val_size=32, epochs=2, train_rounds=1)


def native_module(name: str):
    """The hand-written side for backend ``name`` (imports its framework)."""
    return importlib.import_module(f"d2lconv.bench.native_{name}")


def versions(packages) -> str:
    found = []
    for package in packages:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def load_average() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else "load average unknown"


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}
    return {"cpu": model, "cpus": usable, "python": platform.python_version(), "d2lconv": d2lconv.__version__,
            "thread_settings": threads}


# 1. operator overhead -------------------------------------------------------------------------

def operator_results(name: str, batch_sizes, rounds: int, block_s: float) -> list[dict]:
    """Seconds per call of d2lconv's conv2d/pool2d and the framework's own, backend ``name``
    (whatever selection is in force: the caller decides whether one was chosen)."""
    native = native_module(name)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    results = []
    for n in batch_sizes:
        X = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
        P = rng.standard_normal((n, 6, 28, 28)).astype(np.float32)
        Xd, Wd, Pd = d2lconv.tensor(X), d2lconv.tensor(W), d2lconv.tensor(P)
        ours = {
            "conv2d": lambda: d2lconv.conv2d(Xd, Wd, padding=2),
            "max_pool": lambda: d2lconv.pool2d(Pd, 2, "max"),
            "avg_pool": lambda: d2lconv.pool2d(Pd, 2, "avg"),
        }
        theirs = {"native": native.operator_calls(X, W, P)}
        if _nchw_layout(native):
            theirs["native_nchw"] = native.nchw_operator_calls(X, W, P)
        for op, call in ours.items():
            sides = {"d2lconv": lambda call=call: native.sync(call())}
            for side, calls in theirs.items():
                sides[side] = lambda call=calls[op]: native.sync(call())
            blocks = {side: per_call_block(run, calls_per_block(run, block_s)) for side, run in sides.items()}
            seconds = interleave(blocks, rounds)
            row = {"op": op, "batch": n, "d2lconv_us": 1e6 * median(seconds["d2lconv"])}
            for side, ratio in (("native", "ratio"), ("native_nchw", "ratio_nchw")):
                if side in seconds:
                    row[f"{side}_us"] = 1e6 * median(seconds[side])
                    row[f"{ratio}_by_round"] = [a / b for a, b in zip(seconds["d2lconv"], seconds[side])]
                    row[ratio] = median(row[f"{ratio}_by_round"])
            results.append(row)
    return results


def first_use_results(name: str, settings: Settings) -> dict:
    """:func:`operator_results` in a fresh interpreter with no backend chosen (no
    ``D2LCONV_BACKEND``, no ``set_backend``): the first thing a new user runs. Only measurable for
    the backend d2lconv picks by default there."""
    env = {k: v for k, v in os.environ.items() if k != backend.ENV_VAR}
    task = {"task": "first_use", "backend": name, "batch_sizes": list(settings.op_batch_sizes),
            "rounds": settings.op_rounds, "block_s": settings.op_block_s}
    return _worker(task, env)


def _worker(task: dict, env: dict) -> dict:
    """Run ``task`` in ``python -m d2lconv.bench.worker``; its result, or ``{"skipped": reason}``."""
    done = subprocess.run([sys.executable, "-m", "d2lconv.bench.worker", json.dumps(task)],
                          capture_output=True, text=True, env=env)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"skipped": f"the subprocess failed (exit {done.returncode}): {last}"}


# 2. corr2d against a Python loop ---------------------------------------------------------------

def corr2d_results(name: str, cases, rounds: int) -> list[dict]:
    native = native_module(name)
    rng = np.random.default_rng(1)
    results = []
    for h, w, kh, kw in cases:
        X, K = rng.standard_normal((h, w)).astype(np.float32), rng.standard_normal((kh, kw)).astype(np.float32)
        Xd, Kd = d2lconv.tensor(X), d2lconv.tensor(K)
        Xn, Kn = native.to_native(X), native.to_native(K)
        ours, loop = d2lconv.corr2d(Xd, Kd), python_loop_corr2d(Xn, Kn, native)
        if not np.allclose(d2lconv.to_numpy(ours), d2lconv.to_numpy(loop), rtol=1e-4, atol=1e-4):
            raise AssertionError(f"corr2d and the Python loop disagree on {name} ({h}x{w} input)")
        sides = {"d2lconv": lambda: native.sync(d2lconv.corr2d(Xd, Kd)),
                 "loop": lambda: native.sync(python_loop_corr2d(Xn, Kn, native))}
        blocks = {side: per_call_block(run, calls_per_block(run, 0.05, warmup=1)) for side, run in sides.items()}
        seconds = interleave(blocks, rounds)
        speedups = [b / a for a, b in zip(seconds["d2lconv"], seconds["loop"])]
        results.append({"input": f"{h}x{w}", "kernel": f"{kh}x{kw}", "d2lconv_us": 1e6 * median(seconds["d2lconv"]),
                        "loop_us": 1e6 * median(seconds["loop"]), "speedup": median(speedups),
                        "speedup_by_round": speedups})
    return results


# 3. LeNet training -----------------------------------------------------------------------------

def synthetic_mnist(n: int, seed: int):
    """``n`` random images of MNIST's shape (N, 1, 28, 28) in [0, 1) and labels 0-9 (no download)."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def batches_of(X, y, batch_size: int) -> list:
    return [(X[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


class FreshBatches(Sequence):
    """The same NumPy batches, each handed out as a fresh copy, as a data loader makes them
    (shuffled rows gathered into a new array): every training loop measured, the Trainer and the
    hand-written ones alike, converts a batch it has not seen before. A framework may convert a
    fresh array more slowly than one it converted already (TensorFlow, a batch of 256: 160-200
    vs 37-52 us), so giving one side reused arrays would favour it."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        X, y = self.batches[index]
        return X.copy(), y.copy()


class InMemoryData:
    """The data-module interface ``Trainer.fit`` reads (``num_train``, ``batch_size``,
    ``train_dataloader()``, ``val_dataloader()``) over :class:`FreshBatches`, converted the way
    d2lconv's data modules convert theirs (``batch_from_numpy``: the backend may share a fresh
    batch; validation through :class:`d2lconv.data.ValidationBatches`); ``mark()`` is called as
    each epoch starts."""

    def __init__(self, batches: FreshBatches, val, mark):
        self.batches, self.mark = batches, mark
        labels = [y for _, y in batches.batches]  # sizes from the arrays beneath: no copies
        self.batch_size, self.num_train = len(labels[0]), sum(map(len, labels))
        self.convert = backend.current().batch_from_numpy
        self.val_dataloader = ValidationBatches(backend.get_backend(), lambda: self._converted(FreshBatches([val])))

    def train_dataloader(self):
        self.mark()
        return self._converted(self.batches)

    def _converted(self, batches):
        convert = self.convert
        return ((convert(X), convert(y)) for X, y in batches)


def trainer_fit(batches, val, epochs, lr, mark, compile=None):
    """LeNet through d2lconv's public API: ``Trainer(max_epochs).fit(LeNet(lr), data)``."""
    model = d2lconv.LeNet(lr=lr, seed=0)
    trainer = d2lconv.Trainer(max_epochs=epochs, progress=False, compile=compile)
    history = trainer.fit(model, InMemoryData(batches, val, mark))
    return history["train_loss"][-1]


def timed_fit(fit, batches, val, epochs: int, lr: float = LR) -> dict:
    """Run ``fit(batches, val, epochs, lr, mark)``, which calls ``mark()`` as each epoch starts:
    total seconds (model creation and compilation included), seconds per epoch (the first one
    from the call's start), the last epoch's mean training loss and the peak memory."""
    marks = []
    with PeakMemory() as memory:
        start = time.perf_counter()
        loss = fit(batches, val, epochs, lr, lambda: marks.append(time.perf_counter()))
        end = time.perf_counter()
    bounds = [start, *marks[1:], end]
    return {"total_s": end - start, "epoch_s": [b - a for a, b in zip(bounds, bounds[1:])], "loss": float(loss),
            "extra_mib": memory.extra_mib, "peak_mib": memory.peak_mib}


def keras_fit(keras_backend: str, batch_size: int, settings: Settings) -> dict:
    env = dict(os.environ, KERAS_BACKEND=keras_backend)
    task = {"task": "keras", "batch_size": batch_size, "train_size": settings.train_size,
            "val_size": settings.val_size, "epochs": settings.epochs}
    return _worker(task, env)


def keras_skip_reason(native) -> str | None:
    if native.KERAS_BACKEND is None:
        return "Keras 3 has no backend for this framework"
    if importlib.util.find_spec("keras") is None:
        return "keras is not installed in this environment"
    return None


def training_results(name: str, settings: Settings) -> tuple[list[dict], list[str]]:
    native = native_module(name)
    X, y = synthetic_mnist(settings.train_size, seed=0)
    val = synthetic_mnist(settings.val_size, seed=1)
    loops = native.training_loops()
    notes = [f"{key}: {description}" for key, (description, _) in loops.items()]
    rows = []
    for batch_size in settings.train_batch_sizes:
        batches = FreshBatches(batches_of(X, y, batch_size))
        runs = {TRAINER: lambda: timed_fit(trainer_fit, batches, val, settings.epochs)}
        if backend.load(name).compile_pays_after:
            compiled = functools.partial(trainer_fit, compile=True)
            runs[TRAINER_COMPILED] = lambda: timed_fit(compiled, batches, val, settings.epochs)
        for key, (_, fit) in loops.items():
            runs[key] = lambda fit=fit: timed_fit(fit, batches, val, settings.epochs)
        results = interleave(runs, settings.train_rounds)
        for key, runs_of_key in results.items():
            rows.append(_training_row(key, batch_size, settings, runs_of_key, results[TRAINER]))
    return rows, notes


def fresh_fit(name: str, variant: str, batch_size: int, settings: Settings) -> dict:
    """:func:`timed_fit` of ``variant`` (the Trainer or a hand-written loop of backend ``name``)
    in a fresh Python process, as a user's script runs it."""
    task = {"task": "fit", "backend": name, "variant": variant, "batch_size": batch_size,
            "train_size": settings.train_size, "val_size": settings.val_size, "epochs": settings.epochs}
    return _worker(task, dict(os.environ))


def fresh_process_results(name: str, settings: Settings) -> tuple[list[dict], list[str]]:
    """LeNet fits each in a fresh process: the Trainer, every hand-written loop and Keras 3 (where
    installed), interleaved; what a script pays, start-up and compilation included (in one
    process, as :func:`training_results` measures, later fits reuse what the first compiled)."""
    native = native_module(name)
    keras_skip = None if settings.keras else "--no-keras"
    keras_skip = keras_skip or keras_skip_reason(native)
    notes = [f"each run: a new Python process imports {native.PACKAGES[0]} and d2lconv (or Keras), then times the fit "
             "(the framework's first use, compilation and model creation included)"]
    notes.append(f"{KERAS}: " + (f"skipped ({keras_skip})" if keras_skip else
                                  f"keras.Sequential LeNet, SGD, NHWC, KERAS_BACKEND={native.KERAS_BACKEND}"))
    rows = []
    for batch_size in settings.train_batch_sizes:
        runs = {variant: functools.partial(fresh_fit, name, variant, batch_size, settings)
                for variant in (TRAINER, *native.training_loops())}
        if not keras_skip:
            runs[KERAS] = functools.partial(keras_fit, native.KERAS_BACKEND, batch_size, settings)
        results = interleave(runs, settings.train_rounds)
        failed = next((run["skipped"] for run in results[TRAINER] if "skipped" in run), None)
        for key, runs_of_key in results.items():
            rows.append({"variant": key, "batch": batch_size, "skipped": f"the Trainer's run failed: {failed}"}
                        if failed else _training_row(key, batch_size, settings, runs_of_key, results[TRAINER]))
    return rows, notes


#: (part, result key, title, measurement, how its rounds ran) of the two LeNet training parts
TRAINING_PARTS = (
    ("train", "training", "LeNet training", training_results, "interleaved rounds in this process"),
    ("fresh", "fresh", "LeNet training in fresh processes", fresh_process_results,
     "interleaved rounds, each fit in a fresh process"),
)


def _training_row(key, batch_size, settings, runs, trainer_runs) -> dict:
    """Medians over the rounds; ``trainer_over_this`` is the ratio of the median throughputs
    (per-round pairs are too few, and this machine's load too bursty, for a median of ratios);
    ``trainer_over_this_by_round`` is the same ratio within each round, which shows the spread;
    ``runs`` keeps every round's figures."""
    if any("skipped" in run for run in runs):
        return {"variant": key, "batch": batch_size, "skipped": next(run["skipped"] for run in runs if "skipped" in run)}
    images = settings.train_size * settings.epochs

    def throughput(of_runs):
        return median([images / run["total_s"] for run in of_runs])

    steady = [settings.train_size / median(run["epoch_s"][1:]) for run in runs if len(run["epoch_s"]) > 1]
    return {
        "variant": key, "batch": batch_size,
        "img_per_s": throughput(runs),
        "first_epoch_s": median([run["epoch_s"][0] for run in runs]),
        "steady_img_per_s": median(steady),
        "loss": median([run["loss"] for run in runs]),
        "extra_mib": median([run["extra_mib"] for run in runs]),
        "trainer_over_this": float("nan") if key == TRAINER else throughput(trainer_runs) / throughput(runs),
        "trainer_over_this_by_round": [] if key == TRAINER else [
            this["total_s"] / trainer["total_s"] for trainer, this in zip(trainer_runs, runs)],
        "runs": runs,
    }


# the command -----------------------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("--backend", nargs="+", help="one or several backends (default: the current backend)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one round: a smoke run for CI")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="LeNet training batch sizes (default: 32 256)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds of LeNet training (default: 3); operators run more")
    parser.add_argument("--epochs", type=int, help="epochs per LeNet training run (default: 3)")
    parser.add_argument("--train-size", type=int, help="synthetic training images per epoch (default: 10240)")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts (fresh: fits in fresh processes)")
    parser.add_argument("--no-keras", action="store_true", help="leave Keras out of the fresh-process fits")
    parser.add_argument("--json", metavar="FILE", help="also write every result as JSON to FILE")


def settings_from(options) -> Settings:
    base = QUICK if options.quick else Settings()
    changes = {}
    for option, field in (("batch_sizes", "train_batch_sizes"), ("repeats", "train_rounds"),
                          ("epochs", "epochs"), ("train_size", "train_size")):
        value = getattr(options, option)
        if value is not None:
            if any(v < 1 for v in np.atleast_1d(value)):
                raise SystemExit(f"d2lconv bench: --{option.replace('_', '-')} must be positive, got {value}")
            changes[field] = tuple(value) if isinstance(value, list) else value
    if options.epochs is not None and options.epochs < 2:
        print("note: with one epoch there is no steady-state figure (the first epoch includes compilation)")
    changes["keras"] = not options.no_keras
    return replace(base, **changes)


def run(options) -> int:
    settings = settings_from(options)
    try:
        names = [backend.canonical_name(n) for n in options.backend] if options.backend else [d2lconv.get_backend()]
    except ValueError as error:
        raise SystemExit(f"d2lconv bench: --backend: {error}") from None
    parts = set(options.only or PARTS)
    info = machine()
    print(f"d2lconv bench{' --quick' if options.quick else ''}: {info['cpu']}, {info['cpus']} CPUs, "
          f"Python {info['python']}, d2lconv {info['d2lconv']}")
    if info["thread_settings"]:
        print("thread settings: " + ", ".join(f"{k}={v}" for k, v in info["thread_settings"].items()))
    report = {"machine": info, "settings": settings.__dict__, "backends": {}}
    for name in names:
        report["backends"][name] = bench_backend(name, settings, parts)
    if options.json:
        with open(options.json, "w") as file:
            json.dump(report, file, indent=1, default=list)
        print(f"\nresults written to {options.json}")
    return 0


def bench_backend(name: str, settings: Settings, parts) -> dict:
    print(f"\n=== {name} === ({load_average()})")
    if name not in d2lconv.available_backends():
        reason = f"skipped: {name} is not installed here (pip install \"d2lconv[{backend.BACKENDS[name].extra}]\")"
        print(reason)
        return {"skipped": reason}
    native = native_module(name)
    d2lconv.set_backend(name)
    result = {"versions": versions(native.PACKAGES)}
    print(result["versions"])
    if "ops" in parts:
        if native.OPS_LAYOUT is None:
            print("\noperator overhead: skipped (the NumPy reference backend has no framework call to compare with)")
        else:
            result["ops"] = operator_results(name, settings.op_batch_sizes, settings.op_rounds, settings.op_block_s)
            result["first_use"] = first_use_results(name, settings)
            _print_ops(native, result["ops"], result["first_use"], settings)
    if "corr2d" in parts:
        result["corr2d"] = corr2d_results(name, settings.corr2d_cases, settings.corr2d_rounds)
        print(f"\ncorr2d against a Python loop over output cells (us per call, median of {settings.corr2d_rounds}; goal >= 100x)")
        print(table(["input", "kernel", "d2lconv us", "loop us", "speedup", "by round"],
                    [[r["input"], r["kernel"], r["d2lconv_us"], r["loop_us"], r["speedup"], _spread(r["speedup_by_round"], 0)]
                     for r in result["corr2d"]]))
    for part, key, title, measure, how in TRAINING_PARTS:
        if part not in parts:
            continue
        if not native.training_loops():
            print(f"\n{title}: skipped (the NumPy reference backend is forward-only: no gradients)")
        else:
            result[key], result[f"{key}_notes"] = measure(name, settings)
            _print_training(result[key], result[f"{key}_notes"], settings, how)
    print(f"({name} done, {load_average()})")
    return result


def _nchw_layout(native) -> str | None:
    """The native module's NCHW calls' description where they run on this machine, else None."""
    layout = getattr(native, "NCHW_OPS_LAYOUT", None)
    return layout if layout and native.nchw_skip_reason() is None else None


def _print_ops(native, rows, first_use, settings):
    print(f"\noperator overhead (us per call, median of {settings.op_rounds} interleaved rounds; goal: ratio <= 1.10 at batch 1)")
    print(f"native: {native.OPS_LAYOUT}; d2lconv: NCHW in and out; by round: the lowest and highest ratio of one round")
    headers = ["op", "batch", "d2lconv us", "native us", "d2lconv/native", "by round"]
    nchw = _nchw_layout(native)
    if nchw:
        print(f"NCHW native: {nchw}")
        headers += ["NCHW native us", "d2lconv/NCHW native", "by round"]
    elif getattr(native, "NCHW_OPS_LAYOUT", None):
        print(f"NCHW native: skipped: {native.nchw_skip_reason()}")

    def cells(r):
        return [r["op"], r["batch"], r["d2lconv_us"], r["native_us"], r["ratio"], _spread(r["ratio_by_round"])] + (
            [r["native_nchw_us"], r["ratio_nchw"], _spread(r["ratio_nchw_by_round"])] if nchw else [])

    print(table(headers, [cells(r) for r in rows]))
    if "skipped" in first_use:
        print(f"no backend chosen (first-time user): skipped: {first_use['skipped']}")
    else:
        print("no backend chosen (first-time user: fresh process, no D2LCONV_BACKEND, no set_backend):")
        print(table(headers, [cells(r) for r in first_use["ops"]]))


def _spread(ratios, digits: int = 2) -> str:
    """The lowest and highest of per-round ratios: how much this machine's noise moved them."""
    return f"{min(ratios):.{digits}f}-{max(ratios):.{digits}f}" if ratios else "-"


def _print_training(rows, notes, settings, how: str):
    print(f"\nLeNet training, {settings.train_size} synthetic 28x28 images x {settings.epochs} epochs, lr {LR}, "
          f"median of {settings.train_rounds} {how} (goal: Trainer/this >= 1.0)")
    print("img/s: whole run incl. model creation and compilation; first epoch s: incl. compilation; "
          "steady img/s: later epochs; extra MiB: peak RSS above the run's start; "
          "by round: the lowest and highest Trainer/this within one round")
    done = [r for r in rows if "skipped" not in r]

    print(table(["variant", "batch", "img/s", "1st epoch s", "steady img/s", "loss", "extra MiB", "Trainer/this",
                 "by round"],
                [[r["variant"], r["batch"], r["img_per_s"], r["first_epoch_s"], r["steady_img_per_s"], r["loss"],
                  r["extra_mib"], r["trainer_over_this"], _spread(r["trainer_over_this_by_round"])] for r in done]))
    for r in rows:
        if "skipped" in r:
            print(f"  {r['variant']} (batch {r['batch']}) skipped: {r['skipped']}")
    for compiled in [r for r in done if r["variant"] == TRAINER_COMPILED]:
        others = [r for r in done if r["batch"] == compiled["batch"] and not r["variant"].startswith("d2lconv")]
        print(f"  {TRAINER_COMPILED} / this, batch {compiled['batch']}: "
              + ", ".join(f"{r['variant']} {compiled['img_per_s'] / r['img_per_s']:.2f}" for r in others))
    for note in notes:
        print(f"  {note}")
