"""set_params, load_params and sgd are all-or-nothing; load_params builds a fresh lazy model;
save_params writes files as a plain open() would; weights move between every pair of backends.

Each transactional path gets a failure injected at the LAST parameter (net.11.bias, written
last), and every parameter must then be bit-for-bit what it was.
"""

import os
import zipfile

import numpy as np
import pytest

import d2lconv
from conftest import BACKEND

LAST = "net.11.bias"
INPUT = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)

#: a wrong value for the last parameter (shape (10,)): (value, error type, message)
BAD_LAST = {
    "longer": (np.zeros(11, np.float32), ValueError, r"net\.11\.bias: shape \(11,\), expected \(10,\)"),
    "broadcastable": (np.zeros(1, np.float32), ValueError, r"net\.11\.bias: shape \(1,\), expected \(10,\)"),
    "strings": (np.array(["0.5"] * 10), TypeError, r"net\.11\.bias: dtype <U3 \(must be real numbers"),
    "complex": (np.ones(10, np.complex64), TypeError, r"net\.11\.bias: dtype complex64"),
    "overflow": (np.full(10, 1e300), ValueError, r"net\.11\.bias: values overflow float32"),
}


def _built(d2l, seed=0):
    net = d2l.LeNet(seed=seed)
    net(INPUT[:1])
    return net


def _other_values(d2l, seed=5):
    """Values of every parameter, all different from seed 0's."""
    return d2l.get_params(_built(d2l, seed))


def _assert_bit_identical(before: dict, after: dict):
    assert list(after) == list(before)
    for name in before:
        assert after[name].dtype == before[name].dtype and after[name].tobytes() == before[name].tobytes(), name


@pytest.mark.parametrize("case", BAD_LAST)
def test_set_params_changes_nothing_when_the_last_value_is_bad(d2l, case):
    value, error, message = BAD_LAST[case]
    net = _built(d2l)
    before = d2l.get_params(net)
    values = dict(_other_values(d2l), **{LAST: value})
    with pytest.raises(error, match=message):
        d2l.set_params(net, values)
    _assert_bit_identical(before, d2l.get_params(net))


@pytest.mark.parametrize("case", BAD_LAST)
def test_load_params_changes_nothing_when_the_last_array_is_bad(d2l, case, tmp_path):
    value, error, message = BAD_LAST[case]
    np.savez(tmp_path / "bad.npz", **dict(_other_values(d2l), **{LAST: value}))
    for net in (_built(d2l), d2l.LeNet(seed=0)):  # built, and lazy (never called)
        built = not d2lconv.params.unbuilt_layers(net)
        before = d2l.get_params(net) if built else None
        with pytest.raises(error, match=message):
            d2l.load_params(net, tmp_path / "bad.npz")
        if built:
            _assert_bit_identical(before, d2l.get_params(net))
        else:
            assert len(d2lconv.params.unbuilt_layers(net)) == 5, "a lazy model must stay unbuilt"


@pytest.mark.parametrize("case", BAD_LAST)
def test_sgd_changes_nothing_when_the_last_gradient_is_bad(d2l, case):
    value, error, message = BAD_LAST[case]
    net = _built(d2l)
    before = d2l.get_params(net)
    grads = {name: d2l.tensor(np.ones_like(v)) for name, v in before.items()}
    grads[LAST] = value
    with pytest.raises(error, match=message):
        d2l.sgd(net, grads, 0.1)
    _assert_bit_identical(before, d2l.get_params(net))
    if case == "broadcastable":  # a native (1,) gradient is refused too, not broadcast
        grads[LAST] = d2l.tensor(value)
        with pytest.raises(ValueError, match=r"net\.11\.bias: shape \(1,\), expected \(10,\)"):
            d2l.sgd(net, grads, 0.1)
        _assert_bit_identical(before, d2l.get_params(net))


def test_sgd_steps_with_numpy_and_native_gradients(d2l):
    net = _built(d2l)
    before = d2l.get_params(net)
    grads = {name: np.full(v.shape, 2.0, np.float64) for name, v in before.items()}  # float64: converted
    d2l.sgd(net, grads, 0.25)
    for name, value in d2l.get_params(net).items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value, before[name] - 0.5, rtol=0, atol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match=r"sgd: grads do not fit the model: missing \['net\.0\.bias'\]"):
        d2l.sgd(net, {k: v for k, v in grads.items() if k != "net.0.bias"}, 0.1)
    with pytest.raises(TypeError, match="sgd: grads must be a mapping"):
        d2l.sgd(net, list(grads.values()), 0.1)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        d2l.sgd(net, grads, -1)


def test_set_params_takes_a_mapping_only(d2l):
    net = _built(d2l)
    with pytest.raises(TypeError, match=r"set_params: params must be a mapping \(dict\) of parameter name -> array, got list"):
        d2l.set_params(net, list(d2l.get_params(net).values()))


def test_set_params_converts_to_the_parameter_dtype(d2l):
    net = _built(d2l)
    values = {name: v.astype(np.float64) + 1 for name, v in _other_values(d2l).items()}
    d2l.set_params(net, values)
    for name, value in d2l.get_params(net).items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, values[name].astype(np.float32), err_msg=name)


def test_load_params_builds_a_model_never_called(d2l, tmp_path):
    source = _built(d2l, seed=3)
    d2l.save_params(source, tmp_path / "w.npz")
    fresh = d2l.LeNet()  # lazy: no parameters yet
    d2l.load_params(fresh, tmp_path / "w.npz")
    _assert_bit_identical(d2l.get_params(source), d2l.get_params(fresh))
    np.testing.assert_array_equal(d2l.to_numpy(fresh(INPUT)), d2l.to_numpy(source(INPUT)))


def test_a_file_that_does_not_fit_a_fresh_model_lists_the_differences(d2l, tmp_path):
    values = _other_values(d2l)
    np.savez(tmp_path / "w.npz", **{("x" + k if k == "net.0.bias" else k): v for k, v in values.items()})
    fresh = d2l.LeNet()
    with pytest.raises(ValueError, match=r"missing \['net\.0\.bias'\]; unexpected \['xnet\.0\.bias'\]"):
        d2l.load_params(fresh, tmp_path / "w.npz")
    np.savez(tmp_path / "w.npz", **dict(values, **{"net.0.weight": np.zeros((6, 1, 3, 3), np.float32)}))
    with pytest.raises(ValueError, match=r"net\.0\.weight: shape \(6, 1, 3, 3\), expected \(6, 1, 5, 5\)"):
        d2l.load_params(fresh, tmp_path / "w.npz")
    assert len(d2lconv.params.unbuilt_layers(fresh)) == 5


def test_load_params_names_a_broken_file(d2l, tmp_path):
    net = _built(d2l)
    d2l.save_params(net, tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.npz").write_text("not an archive")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("net.0.weight.npy", b"garbage")
    for name in ("truncated.npz", "text.npz", "other.zip"):
        with pytest.raises(ValueError, match=rf"load_params: '.*{name}' is not a readable \.npz file"):
            d2l.load_params(net, tmp_path / name)
    with pytest.raises(ValueError, match=r"load_params: '.*one\.npy' is a \.npy file holding one array"):
        d2l.load_params(net, tmp_path / "one.npy")
    with pytest.raises(FileNotFoundError, match=r"load_params: no such file: '.*missing\.npz'"):
        d2l.load_params(net, tmp_path / "missing.npz")


def _mode(path):
    return os.stat(path).st_mode & 0o777


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_get_the_mode_a_plain_open_gives(d2l, tmp_path, umask):
    net = _built(d2l)
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w"):
            pass
        d2l.save_params(net, tmp_path / "w.npz")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "w.npz") == _mode(tmp_path / "plain") == 0o666 & ~umask
    os.chmod(tmp_path / "w.npz", 0o640)  # an existing file keeps its mode, as open(path, "w") does
    d2l.save_params(net, tmp_path / "w.npz")
    assert _mode(tmp_path / "w.npz") == 0o640
    assert sorted(os.listdir(tmp_path)) == ["plain", "w.npz"]  # no temporary left behind


def test_a_failed_save_leaves_the_old_file_and_no_temporary(d2l, tmp_path, monkeypatch):
    net = _built(d2l)
    d2l.save_params(net, tmp_path / "w.npz")
    before = (tmp_path / "w.npz").read_bytes()

    def failing_savez(file, **arrays):
        file.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        d2l.save_params(_built(d2l, seed=1), tmp_path / "w.npz")
    assert (tmp_path / "w.npz").read_bytes() == before
    assert os.listdir(tmp_path) == ["w.npz"]


def test_weights_saved_on_any_backend_load_into_a_fresh_model_on_every_other(tmp_path):
    """Every backend installed in this process (the agreement env: torch, tensorflow, jax and
    the NumPy reference; every other env: its framework and the reference) saves random weights;
    a never-called LeNet of every backend loads each file and gives the saver's logits."""
    installed = d2lconv.available_backends()
    rng = np.random.default_rng(7)
    logits = {}
    for name in installed:
        d2l = getattr(d2lconv, name)
        net = d2l.LeNet()
        net(INPUT[:1])
        d2l.set_params(net, {k: rng.standard_normal(v.shape).astype(np.float32) * 0.3 for k, v in d2l.get_params(net).items()})
        d2l.save_params(net, tmp_path / f"{name}.npz")
        logits[name] = d2l.to_numpy(net(INPUT))
    for saved in installed:
        for loaded in installed:
            d2l = getattr(d2lconv, loaded)
            fresh = d2l.LeNet()
            d2l.load_params(fresh, tmp_path / f"{saved}.npz")
            diff = np.abs(d2l.to_numpy(fresh(INPUT)) - logits[saved]).max()
            assert diff <= 1e-5, f"saved on {saved}, loaded into a fresh {loaded} LeNet: logits differ by {diff:.2e}"
    assert BACKEND in installed
