"""``python -m d2lconv.bench.worker TASK_JSON``: the parts of ``d2lconv bench`` that need a fresh
interpreter. Prints one line ``D2LCONV-BENCH-RESULT <json>``.

- ``first_use``: operator overhead with no backend chosen (the parent removed D2LCONV_BACKEND);
- ``fit``: one LeNet fit (the Trainer or a hand-written loop of ``bench.native_<backend>``), its
  framework imported before the clock starts;
- ``keras``: one LeNet ``model.fit`` run in Keras 3 on ``KERAS_BACKEND`` (set by the parent,
  before Keras is imported, as Keras requires).
"""

from __future__ import annotations

import json
import sys

import d2lconv
from d2lconv import bench


def first_use(task: dict) -> dict:
    name, default = task["backend"], d2lconv.get_backend()
    if default != name:
        return {"skipped": f"with no backend chosen d2lconv picks {default} here, not {name} "
                           f"(installed: {', '.join(d2lconv.available_backends())})"}
    return {"ops": bench.operator_results(name, task["batch_sizes"], task["rounds"], task["block_s"])}


def _data(task: dict):
    """The task's training arrays ``(X, y)`` and validation set, as the parent bench makes them."""
    return bench.synthetic_mnist(task["train_size"], seed=0), bench.synthetic_mnist(task["val_size"], seed=1)


def fit(task: dict) -> dict:
    name = task["backend"]
    native = bench.native_module(name)  # the framework's import, as a script's first lines
    d2lconv.set_backend(name)
    (X, y), val = _data(task)
    batches = bench.FreshBatches(bench.batches_of(X, y, task["batch_size"]))
    variant = task["variant"]
    training = bench.trainer_fit if variant == bench.TRAINER else native.training_loops()[variant][1]
    return bench.timed_fit(training, batches, val, task["epochs"])


def keras(task: dict) -> dict:
    from d2lconv.bench import keras_lenet

    data, val = _data(task)
    result = bench.timed_fit(keras_lenet.fit_function(task["batch_size"]), data, val, task["epochs"])
    return {**result, "keras_backend": keras_lenet.keras.backend.backend()}


if __name__ == "__main__":
    task = json.loads(sys.argv[1])
    result = {"first_use": first_use, "fit": fit, "keras": keras}[task["task"]](task)
    print(bench.RESULT_MARK + json.dumps(result))
