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
TRAIN = os.environ.get("D2LCONV_AGREEMENT_TRAIN") == "1"  # the agreement env adds digits training


@pytest.fixture(scope="module")
def results():
    if len(INSTALLED) < 2:
        pytest.skip(f"only {INSTALLED} installed here: nothing to compare with")
    found = agreement.run(INSTALLED, train=TRAIN)
    exported = os.environ.get("D2LCONV_AGREEMENT_LOAD")
    if exported and os.path.exists(exported):
        agreement.load(exported, found)
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
            if TRAIN:
                assert cases["digits/val_acc"][-1] > 0.5, (name, cases["digits/val_acc"])


def test_a_disagreement_is_reported(results):
    name = next(iter(results))
    tampered = {key: value.copy() for key, value in results[name].items()}
    tampered["lenet/logits"] = tampered["lenet/logits"] + 1e-3
    text, ok = agreement.report({name: results[name], "tampered": tampered})
    assert not ok
    assert f"DISAGREE {name} vs tampered: lenet/logits differs by 1.00e-03" in text


def _pairs():
    return [(a, b) for a in INSTALLED for b in INSTALLED if a != b]


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends installed in one environment")
def test_weights_saved_on_one_backend_load_on_every_other(tmp_path):
    images = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    logits = {}
    for name in INSTALLED:
        d2l = getattr(d2lconv, name)
        net = d2l.LeNet(seed=None)  # global generator: different weights on each backend
        net(images[:1])
        path = tmp_path / f"{name}.npz"
        d2l.save_params(net, path)
        logits[name] = d2l.to_numpy(net(images))
    for saved, loaded in _pairs():
        d2l = getattr(d2lconv, loaded)
        net = d2l.LeNet(seed=123)
        net(images[:1])
        d2l.load_params(net, tmp_path / f"{saved}.npz")
        diff = np.abs(d2l.to_numpy(net(images)) - logits[saved]).max()
        assert diff <= 1e-5, f"saved on {saved}, loaded on {loaded}: logits differ by {diff:.2e}"


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends installed in one environment")
def test_learning_a_kernel_prints_the_same_lines_everywhere(capsys):
    from d2lconv.examples import learn_kernel

    printed = {}
    for name in INSTALLED:
        if name == "numpy":
            continue
        with d2lconv.use_backend(name):
            learn_kernel(seed=0)
        printed[name] = capsys.readouterr().out
    assert len(set(printed.values())) == 1, printed


def test_edge_inputs_give_the_stated_values_or_errors_everywhere(results):
    expected_errors = {
        "conv_kernel0x0": "ValueError", "pool_height0": "ValueError", "conv_float16": "TypeError",
        "pool_float16": "TypeError", "conv_huge_padding": "ValueError", "pool_huge_padding": "ValueError",
    }
    for name, cases in results.items():
        for case, error in expected_errors.items():
            assert str(cases[f"edge/{case}"]) == error, (name, case, cases[f"edge/{case}"])
        assert cases["edge/scalar_shape"].shape == (0,), name  # tensor(3.0) is 0-d
        assert np.isnan(cases["edge/max_pool_nan_inf"][0, 0]) and cases["edge/max_pool_nan_inf"][2, 0] == -np.inf, name
        assert np.all(cases["edge/max_pool_all_neg_inf"] == -np.inf), name
        assert cases["edge/conv_batch0"].shape == (0, 2, 4, 4) and cases["edge/pool_channels0"].shape == (0, 2, 2)
        if name != "numpy":
            assert str(cases["edge/grad_non_scalar"]) == "ValueError", name
            assert str(cases["edge/grad_argnums_range"]) == "ValueError", name
            assert str(cases["edge/grad_int_input"]) == "TypeError", name
            assert not np.any(cases["edge/grad_nothing_used"]), name


def test_difference_sees_nan_infinities_shapes_and_errors():
    nan, inf = np.nan, np.inf
    assert agreement.difference(np.array([nan, inf, 1.0]), np.array([nan, inf, 1.0 + 1e-7])) < 1e-6
    assert agreement.difference(np.array([nan, 1.0]), np.array([1.0, 1.0])) == inf
    assert agreement.difference(np.array([inf, 1.0]), np.array([-inf, 1.0])) == inf
    assert agreement.difference(np.zeros((0, 2)), np.zeros((2, 0))) == inf
    assert agreement.difference(np.array("ValueError"), np.array("ValueError")) == 0
    assert agreement.difference(np.array("ValueError"), np.array("TypeError")) == inf
    assert agreement.difference(np.array("ValueError"), np.zeros(3)) == inf
