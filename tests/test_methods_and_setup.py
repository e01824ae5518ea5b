"""Tableau properties computed from coefficients; data sets and initialisations do what they claim."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim.methods import EXPLICIT_METHODS, rooted_trees
from reference import balance_matrices


def test_rooted_tree_counts():
    # OEIS A000081: 1, 1, 2, 4, 9, 20, 48
    assert [len(rooted_trees(n)) for n in range(1, 8)] == [1, 1, 2, 4, 9, 20, 48]


@pytest.mark.parametrize("name", EXPLICIT_METHODS)
def test_explicit_tableaus_satisfy_exactly_their_claimed_order(name):
    m = EXPLICIT_METHODS[name]
    assert m.explicit
    assert m.satisfied_order() == m.order
    assert np.allclose(m.c, m.A.sum(axis=1))
    assert not m.symplectic  # no explicit method satisfies b_i a_ij + b_j a_ji = b_i b_j


def test_dormand_prince_embedded_pair():
    m = EXPLICIT_METHODS["dopri5"]
    assert m.adaptive and m.fsal
    assert m.satisfied_order(m.b_err) == 4


def test_implicit_midpoint_is_symplectic():
    """The condition itself, on a tableau known to satisfy it (Gauss–Legendre, 1 stage)."""
    from noether_sim.methods import Tableau

    gl1 = Tableau("gl1", "", np.array([[0.5]]), np.array([1.0]), np.array([0.5]), 2)
    assert gl1.symplectic and not gl1.explicit and gl1.satisfied_order() == 2


def test_whitened_data_has_exact_moments():
    s = [3.0, 1.0, 0.5]
    data = ns.data.whitened(6, 4, 50, s, seed=2)
    np.testing.assert_allclose(data.X @ data.X.T / 50, np.eye(6), atol=1e-12)
    sv = np.linalg.svd(data.Y @ data.X.T / 50, compute_uv=False)
    np.testing.assert_allclose(sv[:3], s, atol=1e-12)
    assert sv[3] < 1e-12


def test_synthetic_regression_is_reproducible():
    a = ns.data.synthetic_regression(4, 2, 30, noise=0.1, seed=5)
    b = ns.data.synthetic_regression(4, 2, 30, noise=0.1, seed=5)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.Y, b.Y)


@pytest.mark.parametrize("widths", [(5, 3), (4, 7, 3), (6, 3, 8, 2)])
def test_balanced_initialisation_is_exactly_balanced(widths):
    model = ns.DeepLinear(widths)
    theta = ns.init.Balanced(scale=2.0).draw(model, np.random.default_rng(0))
    for D in balance_matrices(model, theta):
        assert np.abs(D).max() < 1e-12
    # all layers share singular values
    svs = [np.linalg.svd(W, compute_uv=False)[: min(widths)] for W, _ in model.unflatten(theta)]
    for sv in svs[1:]:
        np.testing.assert_allclose(sv, svs[0], rtol=1e-12)


def test_orthogonal_initialisation():
    model = ns.DeepLinear((4, 6, 3))
    theta = ns.init.Orthogonal(scale=1.5).draw(model, np.random.default_rng(0))
    (W1, _), (W2, _) = model.unflatten(theta)
    np.testing.assert_allclose(W1.T @ W1, 1.5 ** 2 * np.eye(4), atol=1e-12)
    np.testing.assert_allclose(W2 @ W2.T, 1.5 ** 2 * np.eye(3), atol=1e-12)


def test_gaussian_initialisation_per_layer_scale():
    model = ns.DeepLinear((200, 300, 100))
    theta = ns.init.Gaussian(scale=(1.0, 3.0)).draw(model, np.random.default_rng(0))
    (W1, _), (W2, _) = model.unflatten(theta)
    assert W1.std() * np.sqrt(200) == pytest.approx(1.0, rel=0.02)
    assert W2.std() * np.sqrt(300) == pytest.approx(3.0, rel=0.02)
