"""Cross-framework agreement: the battery on every backend installed here, pairwise.

In a one-framework tox env this compares that framework with the NumPy reference; the
``agreement`` env installs torch, tensorflow and jax together and adds MXNet's exported results.
"""

import os

import numpy as np
import pytest

import d2lconv
from d2lconv import agreement

INSTALLED = d2lconv.available_backends()


@pytest.fixture(scope="module")
def results():
    if len(INSTALLED) < 2:
        pytest.skip(f"only {INSTALLED} installed here: nothing to compare with")
    found = agreement.run(INSTALLED)
    exported = os.environ.get("D2LCONV_AGREEMENT_LOAD")
    if exported and os.path.exists(exported):
        with np.load(exported) as file:
            for key in file.files:
                name, _, case = key.partition(":")
                found.setdefault(name, {})[case] = file[key]
    return found


def test_every_pair_agrees(results):
    text, ok = agreement.report(results)
    print(text)
    assert ok, text


def test_the_battery_covers_ops_model_and_gradients(results):
    for name, cases in results.items():
        assert sum(key.startswith("op/") for key in cases) == 11, name
        assert "lenet/logits" in cases
        if name != "numpy":
            assert {"lenet/sgd_losses", "kernel/losses", "lenet/grad/net.0.weight"} <= set(cases), name


def test_a_disagreement_is_reported(results):
    name = next(iter(results))
    tampered = {key: value.copy() for key, value in results[name].items()}
    tampered["lenet/logits"] = tampered["lenet/logits"] + 1e-3
    text, ok = agreement.report({name: results[name], "tampered": tampered})
    assert not ok
    assert f"DISAGREE {name} vs tampered: lenet/logits differs by 1.00e-03" in text
