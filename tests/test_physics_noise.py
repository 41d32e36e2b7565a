"""The settle loop's fast Gaussian stream: a normal law, independent across keys."""

from __future__ import annotations

import jax.random as jr
import numpy as np
from scipy import stats

from analog_hep.physics._noise import gaussian


def test_gaussian_moments_and_ks():
    z = np.asarray(gaussian(jr.PRNGKey(3), (400_000,)), np.float64)
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.std() - 1) < 5 * np.sqrt(0.5 / n)
    kurt = ((z - z.mean()) ** 4).mean() / z.var() ** 2
    assert abs(kurt - 3) < 5 * np.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_gaussian_is_a_function_of_the_key_and_independent_across_keys():
    a = np.asarray(gaussian(jr.PRNGKey(1), (256, 300)))
    b = np.asarray(gaussian(jr.PRNGKey(1), (256, 300)))
    c = np.asarray(gaussian(jr.fold_in(jr.PRNGKey(1), 1), (256, 300)))
    np.testing.assert_array_equal(a, b)
    n = a.size
    assert abs(np.corrcoef(a.ravel(), c.ravel())[0, 1]) < 5 / np.sqrt(n)
    # neighbouring elements (along rows and columns) are uncorrelated
    assert abs(np.corrcoef(a[:, 1:].ravel(), a[:, :-1].ravel())[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(a[1:].ravel(), a[:-1].ravel())[0, 1]) < 5 / np.sqrt(n)
    assert a.shape == (256, 300) and a.dtype == np.float32
