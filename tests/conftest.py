"""One suite for every backend: the backend under test is D2LCONV_BACKEND (tox sets it)."""

import os

import numpy as np
import pytest
from hypothesis import settings

import d2lconv

settings.register_profile("default", max_examples=40, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BACKEND = d2lconv.get_backend()


def pytest_report_header(config):
    return f"d2lconv backend under test: {BACKEND} (installed: {', '.join(d2lconv.available_backends())})"


@pytest.fixture(scope="session")
def d2l():
    """The public API bound to the backend under test."""
    return getattr(d2lconv, BACKEND)


@pytest.fixture
def needs_autodiff(d2l):
    if BACKEND == "numpy":
        pytest.skip("the numpy backend is the forward-only reference: it has no gradients")


def assert_close(actual, expected, tol=1e-5):
    """Float32 results against float64 ground truth: rtol = atol = ``tol``."""
    actual = d2lconv.to_numpy(actual)
    np.testing.assert_allclose(actual, np.asarray(expected, np.float64), rtol=tol, atol=tol)
