"""Exact data augmentation (theory.md §2 item 5): the augmented loss's invariance, the data-symmetry
charge c = ⟨θ̇_1, W_1K⟩ and its laws under gradient flow, descent, momentum flow and heavy ball."""

import numpy as np
import pytest
from scipy.linalg import expm

import noether_sim as ns
from noether_sim import data as D
from noether_sim import mlp
from noether_sim._validate import ConfigError
from noether_sim.ladder import analyse_ladder, run_ladder

EPS = np.finfo(float).eps


def loss(model, data, theta):
    r = model.forward(theta, data.X) - data.Y
    return 0.5 * np.sum(r * r) / data.n_points


def rotate_first_layer(model, theta, R):
    layers = model.unflatten(theta)
    W1, b1 = layers[0]
    return model.flatten([(W1 @ R, b1)] + layers[1:])


@pytest.mark.parametrize("d", [6, 7])
def test_shift_generator_exponentiates_to_the_closed_form_shift(d):
    K = D.fourier_shift_generator(d)
    np.testing.assert_array_equal(K, -K.T)
    for phi in (0.3, 1.0, 2.7):
        np.testing.assert_allclose(expm(phi * K), D.continuous_shift(d, phi), atol=1e-13)
        R = D.continuous_shift(d, phi)
        np.testing.assert_allclose(R @ R.T, np.eye(d), atol=1e-13)
    if d % 2:  # odd length: an integer continuous shift is the cyclic roll
        x = np.random.default_rng(0).standard_normal(d)
        np.testing.assert_allclose(D.continuous_shift(d, 2.0) @ x, np.roll(x, 2), atol=1e-13)


def _rel_change(model, data, theta, R):
    return abs(loss(model, data, rotate_first_layer(model, theta, R)) - loss(model, data, theta)) / loss(model, data, theta)


@pytest.mark.parametrize("d", [6, 7])
def test_linear_network_loss_is_invariant_under_every_continuous_shift(d):
    """Quadrature (n = 2⌈d/2⌉ − 1 shifts) and the integer group Z_d both give the continuous symmetry to a
    deep linear network with squared loss (circulant input moments, theory.md §2.5)."""
    base = D.synthetic_regression(d, 2, 9, noise=0.1, seed=3)
    model = ns.DeepLinear((d, 5, 2))
    theta = np.random.default_rng(1).standard_normal(model.n_params)
    for aug in (D.augment(base, "cyclic_translations"), D.augment(base, "cyclic_translations", shifts="integer")):
        assert aug.symmetry_exact_for(model)
        for phi in (0.37, 1.9, 4.2):
            assert _rel_change(model, aug, theta, D.continuous_shift(d, phi)) < 1e-13
    # without augmentation the loss does change: the invariance is the augmentation's doing
    assert _rel_change(model, base, theta, D.continuous_shift(d, 0.37)) > 1e-3


def test_relu_network_is_not_made_invariant_by_the_finite_group_nor_by_random_shifts():
    base = D.synthetic_regression(7, 2, 9, noise=0.1, seed=3)
    relu = mlp.MLP((7, 6, 2), activation="relu")
    linear = ns.DeepLinear((7, 6, 2))
    theta = np.random.default_rng(2).standard_normal(relu.n_params)
    integer = D.augment(base, "cyclic_translations", shifts="integer")
    random_set = D.augment(base, "cyclic_translations", shifts=[0.0, 0.8, 2.3, 4.4])
    assert not integer.symmetry_exact_for(relu) and not random_set.symmetry_exact_for(linear)
    R = D.continuous_shift(7, 0.37)
    assert _rel_change(relu, integer, theta, R) > 1e-4
    assert _rel_change(linear, random_set, theta, R) > 1e-4


def test_rotations_in_disjoint_planes_quadrature_is_exact_for_a_linear_network():
    base = D.synthetic_regression(5, 2, 8, noise=0.1, seed=4)
    aug = D.augment(base, "rotations", planes=[(0, 1), (2, 4)])
    assert aug.symmetry_names == ("rot0-1", "rot2-4") and aug.n_points == 8 * 9
    model = ns.DeepLinear((5, 4, 2))
    theta = np.random.default_rng(5).standard_normal(model.n_params)
    for K in aug.symmetry_generators:
        assert _rel_change(model, aug, theta, expm(0.7 * K)) < 1e-13


@pytest.mark.parametrize("kwargs, name", [
    ({"group": "reflections"}, "group"),
    ({"group": "cyclic_translations", "shifts": "half"}, "shifts"),
    ({"group": "cyclic_translations", "shifts": "integer", "n_shifts": 3}, "n_shifts"),
    ({"group": "cyclic_translations", "planes": [(0, 1)]}, "planes"),
    ({"group": "rotations"}, "planes"),
    ({"group": "rotations", "planes": [(0, 1), (1, 2)]}, "planes"),
    ({"group": "rotations", "planes": [(0, 9)]}, "planes"),
    ({"group": "cyclic_translations", "degree": 0}, "degree"),
])
def test_augment_refuses_bad_arguments_naming_them(kwargs, name):
    base = D.synthetic_regression(5, 2, 8, seed=0)
    with pytest.raises(ConfigError, match=name):
        D.augment(base, **kwargs)


def test_generators_must_be_antisymmetric():
    with pytest.raises(ConfigError, match="symmetry_generators"):
        D.TrainingData(np.ones((3, 4)), np.ones((1, 4)), symmetry_generators=np.eye(3)[None])


# ---- the charge in simulate() ----

@pytest.fixture(scope="module")
def shifted():
    return D.augment(D.synthetic_regression(7, 2, 10, noise=0.1, seed=1), "cyclic_translations", shifts="integer")


def _c(ds):
    return ds.charge_initial.sel(component=ds.component_charge == "data_shift").values[:, 0]


def test_recorded_charge_is_the_inner_product_of_the_first_layer_velocity_with_W1K(shifted):
    """c(θ) = ⟨−∇_{W_1}L, W_1K⟩ against finite differences of the loss along W_1 → W_1 e^{sK} (ReLU net,
    where it is not zero): c = −d/ds L(W_1 e^{sK})."""
    model = mlp.MLP((7, 6, 2), activation="relu")
    ds = ns.simulate(model, shifted, method="rk4", h=0.01, n_steps=1, seeds=3)
    K = shifted.symmetry_generators[0]
    for s, theta in enumerate(ds.theta_initial.values):
        s_ = 1e-5
        dL = (loss(model, shifted, rotate_first_layer(model, theta, expm(s_ * K)))
              - loss(model, shifted, rotate_first_layer(model, theta, expm(-s_ * K)))) / (2 * s_)
        assert _c(ds)[s] == pytest.approx(-dL, rel=1e-6)
        assert abs(_c(ds)[s]) > 1e-4


def test_gradient_flow_and_descent_keep_the_restriction_only_where_the_symmetry_is_exact(shifted):
    linear, relu = mlp.MLP((7, 6, 2), activation="linear"), mlp.MLP((7, 6, 2), activation="relu")
    for dynamics, method in (("gf", "rk4"), ("gd", None)):
        ds = ns.simulate(linear, shifted, dynamics=dynamics, method=method, h=0.02, t_end=1.0, save_every=0.2, seeds=8)
        drift = ds.drift.sel(charge="data_shift").values
        scale = ds.scale.sel(charge="data_shift").values
        # law 0: round-off only (bound ε·√steps·scale, as for every conserved charge; measured ≲ ε·scale)
        assert np.all(drift <= EPS * np.sqrt(50) * scale)
        assert np.all(ds.law_factor.sel(component=ds.component_charge == "data_shift").values == 0)
        broken = ns.simulate(relu, shifted, dynamics=dynamics, method=method, h=0.02, t_end=1.0, save_every=0.2, seeds=8)
        assert np.median(broken.drift.sel(charge="data_shift").isel(time=-1).values) > 1e-4


def test_gradient_descent_step_satisfies_the_discrete_identity(shifted):
    """⟨W_1^{k+1}, W_1^k K⟩ = η c(θ_k) (theory: ⟨W_1^k, W_1^k K⟩ = 0 for antisymmetric K)."""
    model = mlp.MLP((7, 6, 2), activation="relu")
    eta = 0.05
    ds = ns.simulate(model, shifted, dynamics="gd", h=eta, n_steps=1, seeds=4)
    K = shifted.symmetry_generators[0]
    for s in range(4):
        W0 = model.unflatten(ds.theta_initial.values[s])[0][0]
        W1 = model.unflatten(ds.theta_final.values[s])[0][0]
        assert np.sum(W1 * (W0 @ K)) == pytest.approx(eta * _c(ds)[s], rel=1e-10)


def test_heavy_ball_obeys_the_momentum_law_exactly_and_rk4_to_order_four(shifted):
    """c_{k+1} = β c_k (β = e^{−h/τ}) at any step size for heavy ball; RK4 on momentum flow approaches
    e^{−t/τ}c(0) as h⁴."""
    model = mlp.MLP((7, 6, 2), activation="linear")
    hb = ns.simulate(model, shifted, dynamics="heavy_ball", h=0.1, tau=0.5, velocity=0.5, t_end=2.0,
                     save_every=0.5, seeds=8)
    c0 = np.abs(_c(hb))
    assert np.all(c0 > 1e-3)  # a random velocity has angular momentum
    assert np.all(hb.drift.sel(charge="data_shift").values <= 100 * EPS * hb.scale.sel(charge="data_shift").values)
    law = hb.law_factor.sel(component=hb.component_charge == "data_shift").item()
    assert law == pytest.approx(np.exp(-2.0 / 0.5))
    ladder = run_ladder(model, shifted, step_sizes=[0.05, 0.025, 0.0125, 0.00625], dynamics="momentum", method="rk4",
                        tau=0.5, velocity=0.5, t_end=1.0, seeds=8)
    an = analyse_ladder(ladder).sel(charge="data_shift")
    assert np.all(np.abs(an.fitted_order.values - 4) < 0.3)
    assert set(an.verdict.values) == {"conserved by the flow"}


def test_a_study_mixing_gradient_flow_and_momentum_aligns_the_data_charge(tmp_path):
    from noether_sim.execute import run_study

    cfg = {
        "name": "mix", "t_end": 0.5, "save_every": 0.25,
        "model": {"kind": "deep_linear", "widths": [5, 4, 2]},
        "data": {"kind": "synthetic_regression", "n_points": 6, "augment": {"group": "cyclic_translations",
                                                                             "shifts": "integer"}},
        "seeds": {"count": 4},
        "methods": {"gf": {"dynamics": "gf", "method": "rk4", "track_energy": True,
                           "step_sizes": [0.03125, 0.015625, 0.0078125]},
                    "mom": {"dynamics": "momentum", "method": "verlet", "tau": 1.0, "velocity": 0.5,
                            "step_sizes": [0.03125, 0.015625, 0.0078125]}},
    }
    ds = run_study(cfg, tmp_path / "mix")
    comp = ds.component_charge.values
    # the blocks differ in charges (energy under gf only, J under momentum only): matched by name
    assert list(ds.charge.values) == ["D1", "data_shift", "energy", "J1"]
    assert list(comp).count("J1") == 16 and list(comp).count("energy") == 1  # J1: 4 × 4
    c = ds.charge_initial.sel(component=comp == "data_shift")
    assert np.all(np.isfinite(c.values))
    for scheme, charge in (("gf", "J1"), ("mom", "energy")):
        assert np.all(np.isnan(ds.charge_initial.sel(scheme=scheme, component=comp == charge).values))
        assert set(ds.verdict.sel(scheme=scheme, charge=charge).values) == {"no such charge in this dynamics"}
    E0 = ds.charge_initial.sel(scheme="gf", component=comp == "energy").isel(step=0).values[:, 0]
    np.testing.assert_allclose(E0, ds.loss.sel(scheme="gf").isel(step=0, time=0).values, rtol=1e-14)
    assert set(ds.verdict.sel(scheme="gf", charge="energy").values) == {"conserved by the flow"}
    # the conformal symplectic splitting keeps c(t) = e^{−t/τ}c(0) to round-off at every step size
    drift = ds.drift.sel(scheme="mom", charge="data_shift").values
    assert np.all(drift <= 100 * EPS * ds.scale.sel(scheme="mom", charge="data_shift").values)


def test_config_augment_table_is_checked():
    from noether_sim.config import parse_config

    base = {"t_end": 1.0, "save_every": 0.125, "model": {"kind": "deep_linear", "widths": [5, 4, 2]}, "seeds": {"count": 2},
            "methods": {"gf": {"dynamics": "gf", "method": "rk4", "step_sizes": [0.03125, 0.015625, 0.0078125]}}}
    for aug, key in (({"group": "cyclic_translations", "planes": [[0, 1]]}, "data.augment.planes"),
                     ({"group": "rotations"}, "data.augment.planes"),
                     ({"group": "cyclic_translations", "shifts": "some"}, "data.augment.shifts"),
                     ({"group": "cyclic_translations", "n_shift": 3}, "data.augment.n_shift"),
                     ({"group": "rotations", "planes": [[0, 7]]}, "data.augment.planes")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config({**base, "data": {"kind": "synthetic_regression", "n_points": 6, "augment": aug}})
    cfg = parse_config({**base, "data": {"kind": "synthetic_regression", "n_points": 6,
                                         "augment": {"group": "cyclic_translations"}},
                        "record": {"charges": ["data_shift"]}})
    assert cfg["data"]["augment"] == {"group": "cyclic_translations", "shifts": "quadrature", "degree": 1}


def test_an_absurd_augmentation_is_refused_before_it_is_built():
    base = D.synthetic_regression(6, 2, 100, seed=0)
    with pytest.raises(ConfigError, match="n_shifts"):
        D.augment(base, "cyclic_translations", n_shifts=10 ** 9)
    with pytest.raises(ConfigError, match="n_angles"):
        D.augment(base, "rotations", planes=[(0, 1), (2, 3), (4, 5)], n_angles=5000)


def test_rotation_groups_give_one_charge_per_plane_each_with_its_law():
    base = D.synthetic_regression(5, 2, 8, noise=0.1, seed=4)
    aug = D.augment(base, "rotations", planes=[(0, 1), (2, 4)])
    model = ns.DeepLinear((5, 4, 2))
    ds = ns.simulate(model, aug, dynamics="momentum", method="verlet", tau=0.5, velocity=0.5, h=0.05, t_end=1.0,
                     save_every=0.25, seeds=6, watch_seeds=[0])
    assert list(ds.charge.values) == ["D1", "data_rot0-1", "data_rot2-4", "J1"]
    assert ds.attrs["data_symmetry_exact"] == 1
    for name in ("data_rot0-1", "data_rot2-4"):
        c0 = ds.charge_initial.sel(component=ds.component_charge == name).values[:, 0]
        assert np.all(np.abs(c0) > 1e-3)
        # conformal symplectic splitting: c(t) = e^{−t/τ}c(0) to round-off, at this coarse step
        drift = ds.drift.sel(charge=name).values
        assert np.all(drift <= 100 * EPS * ds.scale.sel(charge=name).values)
        watched = ds.charge_watch.sel(component=ds.component_charge == name).isel(watched_seed=0).values[:, 0]
        np.testing.assert_allclose(watched, c0[0] * np.exp(-ds.time.values / 0.5), rtol=1e-12)


def test_a_study_recording_the_energy_of_only_some_methods(tmp_path):
    """record.charges may name the energy when one method tracks it: the others' blocks lack it (NaN)."""
    from noether_sim.execute import run_study

    cfg = {
        "name": "some", "t_end": 0.25, "save_every": 0.125,
        "model": {"kind": "deep_linear", "widths": [4, 3, 2]},
        "data": {"kind": "synthetic_regression", "n_points": 6}, "seeds": {"count": 2},
        "record": {"charges": ["D1", "energy"]},
        "methods": {"mom": {"dynamics": "momentum", "method": "verlet", "tau": 1.0,
                            "step_sizes": [0.03125, 0.015625, 0.0078125]},
                    "e": {"dynamics": "gf", "method": "rk4", "track_energy": True,
                          "step_sizes": [0.03125, 0.015625, 0.0078125]},
                    "plain": {"dynamics": "gf", "method": "rk4", "track_energy": False,
                              "step_sizes": [0.03125, 0.015625, 0.0078125]}},
    }
    ds = run_study(cfg, tmp_path / "some")
    assert list(ds.charge.values) == ["D1", "energy"]
    assert np.all(np.isfinite(ds.drift.sel(scheme="e", charge="energy").values))
    assert np.all(np.isnan(ds.drift.sel(scheme="plain", charge="energy").values))
    # a momentum method listed first still gives the single-run order of charges
    full = run_study({**cfg, "name": "all", "record": {"charges": "all"}}, tmp_path / "all")
    assert list(full.charge.values) == ["D1", "energy", "J1"]
