"""track_ntk: the NTK recorded along the run equals diagnostics.ntk at the same θ."""

import numpy as np
import pytest

import noether_sim as ns
from noether_sim import diagnostics
from noether_sim.init import Given
from noether_sim.mlp import MLP, teacher_regression


@pytest.fixture(scope="module")
def problem():
    model = MLP((3, 6, 2), activation="tanh")
    data = teacher_regression(MLP((3, 4, 2), activation="tanh"), 10, noise=0.05)
    return model, data


def _summary(model, data, theta, theta0):
    K, K0 = diagnostics.ntk(model, theta, data.X), diagnostics.ntk(model, theta0, data.X)
    y = data.Y.reshape(-1)
    return (np.linalg.norm(K - K0) / np.linalg.norm(K0), np.sort(np.linalg.eigvalsh(K))[::-1][:3],
            y @ K @ y / (np.linalg.norm(K) * (y @ y)))


def test_tracked_ntk_equals_diagnostics_ntk_at_every_save_time(problem):
    model, data = problem
    times = [0.25, 0.5, 0.75, 1.0]
    kw = dict(dynamics="gd", h=0.05)
    ds = ns.simulate(model, data, t_end=1.0, save_times=times, seeds=3, watch_seeds=[2, 0], track_ntk=True,
                     ntk_top=3, **kw)
    assert ds.ntk_eigenvalues.sizes["ntk_rank"] == 3
    for sid in (2, 0):
        th0 = ds.theta_initial.sel(seed=sid).values
        # θ at the save times, independently: gradient descent restarted from each save time
        path = diagnostics.trajectory(model, data, save_times=times, theta0=th0, **kw)[0]
        np.testing.assert_array_equal(path[-1], ds.theta_final.sel(seed=sid).values)  # same steps, same bits
        for i, th in enumerate(path):
            change, eig, align = _summary(model, data, th, th0)
            w = ds.sel(watched_seed=sid).isel(time=i)
            np.testing.assert_allclose(w.ntk_change.values, change, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(w.ntk_eigenvalues.values, eig, rtol=1e-12)
            np.testing.assert_allclose(w.ntk_alignment.values, align, rtol=1e-12)
        # the test can fail: the kernel moves by far more than the tolerance
        assert ds.ntk_change.sel(watched_seed=sid).values[-1] > 1e-3
    assert np.all(ds.ntk_alignment.values > 0) and np.all(ds.ntk_alignment.values <= 1)


def test_tracked_ntk_under_gradient_flow_ends_at_theta_final(problem):
    model, data = problem
    ds = ns.simulate(model, data, dynamics="gf", method="rk4", h=0.05, t_end=0.5, save_every=0.25, seeds=2,
                     watch_seeds=[1], track_ntk=True)
    th0, thT = ds.theta_initial.sel(seed=1).values, ds.theta_final.sel(seed=1).values
    change, eig, align = _summary(model, data, thT, th0)
    w = ds.sel(watched_seed=1).isel(time=-1)
    np.testing.assert_allclose(w.ntk_change.values, change, rtol=1e-12)
    np.testing.assert_allclose(w.ntk_eigenvalues.values[:3], eig, rtol=1e-12)
    np.testing.assert_allclose(w.ntk_alignment.values, align, rtol=1e-12)
    assert ds.ntk_change.sel(watched_seed=1).values[0] == 0.0


def test_deep_linear_ntk_is_the_linear_mlp_ntk():
    model = ns.DeepLinear((3, 4, 2))
    theta = Given(np.random.default_rng(0).standard_normal((1, model.n_params))).rows(model, 1)[0]
    X = np.random.default_rng(1).standard_normal((3, 5))
    K = diagnostics.ntk(model, theta, X)
    J = diagnostics.jacobian(MLP((3, 4, 2), activation="linear"), theta, X)
    np.testing.assert_allclose(K, J @ J.T, rtol=1e-14)
    # against finite differences of f(x) = W2 W1 x
    f = lambda th: model.forward(th, X).reshape(-1)  # noqa: E731
    eps = 1e-6
    Jfd = np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(model.n_params)]).T
    np.testing.assert_allclose(diagnostics.jacobian(model, theta, X), Jfd, atol=1e-8)


def test_track_ntk_is_refused_without_watched_seeds(problem):
    model, data = problem
    with pytest.raises(ns.ConfigError, match="track_ntk.*watch_seeds"):
        ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=2, track_ntk=True)
    with pytest.raises(ns.ConfigError, match="ntk_top"):
        ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=2, watch_seeds=[0], track_ntk=True, ntk_top=21)


def test_untracked_runs_carry_nan_ntk_variables(problem):
    model, data = problem
    ds = ns.simulate(model, data, dynamics="gd", h=0.05, n_steps=2, watch_seeds=[0])
    assert ds.ntk_change.shape == (1, 3) and np.all(np.isnan(ds.ntk_change.values))


def test_a_study_records_the_ntk_and_draws_it(tmp_path):
    from matplotlib.image import imread

    from noether_sim.builders import build_data, build_model
    from noether_sim.config import load_config
    from noether_sim.plots import save_figures
    from noether_sim.store import StoreWriter
    from noether_sim.study import run_study, study_provenance

    cfg = load_config(None, ["seeds.count=3", "t_end=0.0625", "save_every=0.015625", "record.watch_seeds=[0, 2]",
                             "record.track_ntk=true", "record.final_weights=true", "model.widths=[3, 5, 2]",
                             "data.n_points=6"])
    cfg["methods"] = {"gd": cfg["methods"]["gd"], "gf-rk4": cfg["methods"]["gf-rk4"]}
    writer = StoreWriter(tmp_path / "s", cfg, study_provenance())
    run_study(cfg, writer)
    writer.finish()
    ds = ns.load(tmp_path / "s")
    model, data = build_model(cfg), build_data(cfg)
    # t = 0: the NTK at the stored initial weights
    K0 = diagnostics.ntk(model, ds.theta_initial.sel(seed=2).values, data.X)
    top = np.sort(np.linalg.eigvalsh(K0))[::-1][:4]
    stored = ds.ntk_eigenvalues.sel(scheme="gd", watched_seed=2).isel(step=0, time=0).values
    np.testing.assert_allclose(stored, top, rtol=1e-12)
    assert np.all(ds.ntk_change.sel(watched_seed=2).isel(time=-1).values > 0)
    # t = T under RK4 (deep linear gradient flow: the seed-interleaved fast path where it applies)
    for k in range(4):
        thT = ds.theta_final.sel(scheme="gf-rk4", seed=2).isel(step=k).values
        KT = diagnostics.ntk(model, thT, data.X)
        w = ds.sel(scheme="gf-rk4", watched_seed=2).isel(step=k, time=-1)
        np.testing.assert_allclose(w.ntk_change.values, np.linalg.norm(KT - K0) / np.linalg.norm(K0), rtol=1e-12)
        np.testing.assert_allclose(w.ntk_eigenvalues.values, np.sort(np.linalg.eigvalsh(KT))[::-1][:4], rtol=1e-12)
    paths = save_figures(ds, tmp_path / "fig")
    png = [p for p in paths if p.name == "ntk_vs_time.png"]
    assert png
    img = imread(png[0])
    assert np.std(img[..., :3]) > 0.05
    with pytest.raises(ns.ConfigError, match="record.track_ntk"):
        load_config(None, ["record.track_ntk=true"])


@pytest.mark.slow  # a whole study or sweep through the CLI: the README's quick command leaves it out
def test_the_cli_runs_a_study_with_the_ntk_tracked(tmp_path, capsys):
    from noether_sim.cli import main

    out = tmp_path / "s"
    sets = ["seeds.count=3", "t_end=0.0625", "save_every=0.015625", "record.watch_seeds=[1]", "record.track_ntk=true",
            "model.widths=[3, 5, 2]", "data.n_points=6"]
    assert main(["run", *[a for s in sets for a in ("--set", s)], "--out", str(out), "-q"]) == 0
    ds = ns.load(out)
    assert np.all(np.isfinite(ds.ntk_change.values)) and ds.sizes["ntk_rank"] == 4
    assert (out / "figures" / "ntk_vs_time.png").stat().st_size > 1000


def test_run_ladder_tracks_the_ntk_on_every_rung(problem):
    model, data = problem
    lad = ns.run_ladder(model, data, dynamics="gd", step_sizes=[0.1, 0.05, 0.025], t_end=0.2, save_every=0.1,
                        seeds=2, watch_seeds=[1], track_ntk=True)
    assert lad.ntk_change.dims == ("h", "watched_seed", "time")
    assert np.all(lad.ntk_change.isel(time=0).values == 0) and np.all(lad.ntk_change.isel(time=-1).values > 0)
    # smaller steps, same flow: the kernel's change at T converges (differences shrink with h)
    c = lad.ntk_change.isel(watched_seed=0, time=-1).values
    assert abs(c[1] - c[2]) < abs(c[0] - c[1])
