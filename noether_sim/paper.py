"""The four claims of Głuch & Urbanke, "Noether: the more things change, the more stay the same"
(arXiv 2104.05508), as runnable experiments: ``reproduce`` (``noether-sim reproduce``).

Each claim is an ordinary study configuration under ``examples/paper/`` (a sweep where it varies a
setting), run into a store like any study; then its figures are drawn from that store (and from a few
short extra runs where a figure needs a trajectory or a scan) and ``report.md`` gets the claim's
statement, configuration, the measured numbers and verdicts, and its figures. Every number in the report
is computed from the run that writes it.
"""

from __future__ import annotations

import contextvars
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _validate as v

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "paper"
# --full: paper-scale ensembles (the defaults finish in a few minutes on 2 cores)
FULL_SEEDS = 1024


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    statement: str
    config: str


CLAIMS = {
    "a": Claim("a", "Symmetry of the activation → bounded weights",
               "For a positively homogeneous activation (ReLU, leaky ReLU, |z|) the rescaling w_in → c·w_in, "
               "w_out → w_out/c of a hidden neuron leaves the network unchanged, so gradient flow conserves "
               "r = |w_in|² − |w_out|² per neuron: the two norms can only grow together, |w_in|² = "
               "(r + √(r² + 4P²))/2 with P = |w_in||w_out|. tanh has no such symmetry (the control).",
               "a_bounded_weights.toml"),
    "b": Claim("b", "Linear activations → balance of consecutive layers",
               "For linear activations the change of basis W_i → MW_i, W_{i+1} → W_{i+1}M⁻¹ is a symmetry, so "
               "gradient flow conserves D_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ at any depth (decaying as e^{−2λt} "
               "under weight decay λ). Gradient descent breaks it by exactly η²(G_{i+1}ᵀG_{i+1} − G_iG_iᵀ) "
               "per step.", "b_balance.toml"),
    "c": Claim("c", "Data augmentation → momentum-type restrictions",
               "If the training set is closed under a group acting orthogonally on the inputs and the loss is "
               "invariant under W_1 → W_1e^{sK}, gradient flow and descent keep c = ⟨θ̇_1, W_1K⟩ = 0 (for "
               "descent ⟨θ_{k+1}, Kθ_k⟩ = ηc = 0), and momentum dynamics obey c(t) = e^{−t/τ}c(0) (the angular "
               "momentum J_K = e^{t/τ}τc is conserved), exactly for heavy ball. Integer cyclic shifts already "
               "give a linear network the continuous symmetry; not a ReLU network; a random set of shifts "
               "gives it to neither.", "c_augmentation.toml"),
    "d": Claim("d", "Time symmetry → energy balance and the NTK",
               "Gradient flow conserves E = L(θ(t)) + ∫₀ᵗ|θ̇|² ds = L(θ(t)) + (1/N²)∫₀ᵗ rᵀΘr ds (Θ the "
               "empirical neural tangent kernel); gradient descent breaks it at first order in η. How much Θ "
               "changes during training tells lazy from rich training, by width.", "d_energy_ntk.toml"),
}


def reproduce(claims=None, out="paper", *, full: bool = False, seeds: int | None = None, progress: bool = False,
              log=None, overwrite: bool = False) -> Path:
    """Run the claims' experiments into ``out`` (one store per claim), draw their figures and write
    ``out/report.md``; returns its path. ``claims``: a subset of "abcd" (default all). ``seeds``
    overrides every study's seed count (``full``: 1024).

    Nothing in ``out`` is replaced unless ``overwrite``: a claim's store of other settings (an earlier
    ``--full`` run under a quick ``--seeds 8`` look), or a report or figure this function did not write
    (or that changed since), raises ``OutputExistsError`` saying what exists, before any work for the
    stores and the report. A store of the same settings is resumed."""
    claims = list(claims or CLAIMS)
    if seeds is not None:
        seeds = v.positive_int("seeds", seeds)
        if full:
            v.fail("seeds", seeds, "give seeds or full, not both")
    elif full:
        seeds = FULL_SEEDS
    for c in claims:
        if c not in CLAIMS:
            v.fail("claims", claims, f"each must be one of {', '.join(CLAIMS)}")
    if not EXAMPLES.is_dir():
        v.fail("examples", str(EXAMPLES), "the paper's study configurations are missing: reproduce runs from a "
                                          "checkout of the repository (pip install -e .)")
    say = log or (lambda *a: None)
    out = Path(out)
    _check_outputs(out, claims, seeds, overwrite)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    sections = []
    token = _OVERWRITE.set(overwrite)
    try:
        for c in claims:
            started = time.perf_counter()
            say(f"claim ({c}): {CLAIMS[c].title}")
            sections.append(_RUNNERS[c](CLAIMS[c], out, seeds, progress, say))
            say(f"claim ({c}) done in {time.perf_counter() - started:.0f} s")
    finally:
        _OVERWRITE.reset(token)
    report = out / "report.md"
    _check_owned(report, overwrite)
    report.write_text(_report_text(sections, full, seeds))
    _own(report)
    return report


# ---- shared pieces ----

@dataclass
class Section:
    claim: Claim
    overrides: list
    store: Path
    tables: list  # markdown tables (strings)
    numbers: list  # sentences with measured numbers
    figures: list  # paths relative to the report


def _run(claim, out, seeds, progress, say, overrides=()):
    from .execute import run_study

    overrides = list(overrides) + ([f"seeds.count={seeds}"] if seeds is not None else [])
    store = out / claim.config.removesuffix(".toml")
    # the store of an earlier, interrupted reproduce is resumed (another configuration's was refused or,
    # with overwrite, replaced by _check_outputs)
    ds = run_study(EXAMPLES / claim.config, store, overrides=overrides, progress=progress, log=say)
    return ds, overrides, store


def _points(ds):
    """(index, label, the point's Dataset, its config) for every point of a loaded sweep."""
    from .results import sweep_point
    from .tables import describe_point

    configs = json.loads(ds.attrs["point_configs"])
    return [(p, describe_point(ds, p), sweep_point(ds, p), configs[p]) for p in range(len(configs))]


def _verdict_table(points, charges, methods=None) -> str:
    from .tables import _basis_text, summary_rows

    lines = ["| point | method | charge | median drift at finest h | fitted order | h→0 drift | verdict | basis |",
             "|---|---|---|---|---|---|---|---|"]
    for _, label, sub, _ in points:
        for row in summary_rows(sub):
            if row.charge in charges and (methods is None or row.method in methods):
                lines.append(f"| {label} | {row.method} | {row.charge} | {row.drift_median:.3g} | "
                             f"{row.fitted_order:.2f} | {row.extrapolated_drift:.3g} | {row.verdict} | "
                             f"{_basis_text(row.extra)} |")
    return "\n".join(lines)


def _median_final(sub, scheme, charge, var="drift"):
    """(h, median over finished seeds of ``var`` at the last save time) for every step of ``scheme``."""
    from .tables import ok_seeds

    h = sub.h.sel(scheme=scheme).values
    final = sub[var].sel(scheme=scheme, charge=charge).isel(time=-1).transpose("step", "seed").values
    ok = ok_seeds(sub, scheme)
    return h, np.array([np.nanmedian(final[k, ok]) for k in range(len(h))])


def _figure(nrows=1, ncols=1, width=6.0, height=5.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def _save(fig, out, name) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = out / "figures" / f"{name}.png"
    try:
        _check_owned(path, _OVERWRITE.get())
    except OutputExistsError:
        plt.close(fig)
        raise
    fig.savefig(path, dpi=110)
    plt.close(fig)
    _own(path)
    return f"figures/{name}.png"


H_LABEL = "step size h (dimensionless time; learning rate η for gradient descent)"


def _ladder_plot(ax, series, charge_text):
    """Median final drift against h, log-log, with fitted slopes; ``series``: (label, h, drift) or
    (label, h, drift, colour, line style)."""
    from .plots import fitted_slope

    for label, h, y, *look in series:
        style = dict(color=look[0], linestyle=look[1], marker="o" if look[1] == "-" else "s") if look else {"marker": "o"}
        ax.plot(h, np.where(y > 0, y, np.nan), **style, label=f"{label}: slope {fitted_slope(h, y):.2f}")
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
    from .tables import h_text

    hs = sorted({float(x) for _, h, *_ in series for x in h if np.isfinite(x)})
    ax.set_xticks(hs, [h_text(x) for x in hs])
    ax.set_xlabel(H_LABEL)
    ax.set_ylabel(f"median final drift of {charge_text}")
    ax.legend(fontsize="small", ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below: off the curves
    ax.grid(True, which="both", alpha=0.3)


# ---- (a) ----

def _claim_a(claim, out, seeds, progress, say):
    from .builders import build_data, build_model
    from .diagnostics import trajectory

    ds, overrides, store = _run(claim, out, seeds, progress, say)
    points = _points(ds)
    numbers, figures = [], []
    fig, (ax,) = _figure()
    series = []
    for _, label, sub, cfg in points:
        h, med = _median_final(sub, "gf-rk4", "r1")
        series.append((cfg["model"]["activation"], h, med))
    _ladder_plot(ax, series, "r (all neurons)")
    ax.set_title("(a) rescale charge r under RK4 gradient flow:\n→ 0 with h (homogeneous activations) or not (tanh)",
                 fontsize="medium")
    figures.append(_save(fig, out, "a_rescale_charge_vs_step"))

    # boundedness along one path: the norms the conserved r implies, against the measured ones
    fig, axes = _figure(1, 2, height=5.0)
    shown = None  # the neurons drawn: chosen on the first panel, the same (same colours) on the second
    for ax, act in zip(axes, ("relu", "tanh")):
        _, label, sub, cfg = next(pt for pt in points if pt[3]["model"]["activation"] == act)
        model, data = build_model(cfg), build_data(cfg)
        times = np.arange(1, 17) * cfg["t_end"] / 16
        theta0 = sub.theta_initial.isel(seed=0).values
        path = trajectory(model, data, save_times=times, theta0=theta0, dynamics="gf", method="rk4",
                          h=float(np.nanmin(sub.h.values)))[0]
        t = np.concatenate([[0.0], times])
        layers = [model.unflatten(th) for th in path]  # no bias in this study: w_in is a row of W_1
        w_in2 = np.array([np.sum(lay[0][0] ** 2, axis=1) for lay in layers])  # (time, neuron)
        w_out2 = np.array([np.sum(lay[1][0] ** 2, axis=0) for lay in layers])
        r0 = w_in2[0] - w_out2[0]
        P = np.sqrt(w_in2 * w_out2)
        law = 0.5 * (r0 + np.sqrt(r0 ** 2 + 4 * P ** 2))
        err = np.max(np.abs(w_in2 - law) / np.maximum(w_in2, 1e-300))
        growth = np.max((w_in2[-1] + w_out2[-1]) / (w_in2[0] + w_out2[0]))  # per neuron, the largest
        if shown is None:
            shown = np.argsort(-np.abs(w_in2[-1] - w_in2[0]))[:4]
        for c, j in enumerate(shown):
            ax.plot(t, w_in2[:, j], "o", ms=4, color=f"C{c}", label=f"neuron {j}")
            ax.plot(t, law[:, j], "-", color=f"C{c}")
        ax.plot([], [], "ko", ms=4, label="measured |w_in|²")
        ax.plot([], [], "k-", label="(r(0) + √(r(0)² + 4P²))/2")
        ax.set_xlabel("time t (dimensionless)")
        ax.set_ylabel("|w_in|² of a hidden neuron (dimensionless)")
        ax.set_title(f"(a) {act}: law from the conserved charge vs measurement", fontsize="medium")
        ax.legend(fontsize="small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13))
        numbers.append(f"{act}, seed 0, RK4 at h = {float(np.nanmin(sub.h.values)):g}: largest relative gap between "
                       f"|w_in(t)|² and the norm the conserved r(0) implies, (r(0) + √(r(0)² + 4P(t)²))/2, over "
                       f"{model.widths[1]} neurons and {len(t)} times: {err:.2e}; the largest growth of a neuron's "
                       f"|w_in|² + |w_out|²: a factor {growth:.3f}")
    figures.append(_save(fig, out, "a_norms_from_charge"))
    table = _verdict_table(points, ["r1"])
    return Section(claim, overrides, store, [table], numbers, figures)


# ---- (b) ----

def _claim_b(claim, out, seeds, progress, say):
    ds, overrides, store = _run(claim, out, seeds, progress, say)
    points = _points(ds)
    numbers, figures = [], []
    fig, axes = _figure(1, 2)
    for ax, lam in zip(axes, (0.0, 0.05)):
        series = []
        for i, (_, label, sub, cfg) in enumerate(pt for pt in points if pt[3]["weight_decay"] == lam):
            depth = len(cfg["model"]["widths"]) - 1
            for scheme, ls in (("gf-rk4", "-"), ("gd", "--")):  # one colour per depth, one style per method
                h, med = _median_final(sub, scheme, "D1")
                series.append((f"{scheme}, depth {depth}", h, med, f"C{i}", ls))
        _ladder_plot(ax, series, "D_1 (Frobenius)")
        ax.set_title(f"(b) balance D_1 at t = T, weight decay λ = {lam:g}", fontsize="medium")
    figures.append(_save(fig, out, "b_balance_vs_step"))

    # gradient descent: measured drift against its exact law's prediction over time
    fig, (ax,) = _figure(height=5.0)
    styles = {"drift": "o", "predicted": "-", "residual": ":"}
    for i, (_, label, sub, cfg) in enumerate(pt for pt in points if pt[3]["weight_decay"] == 0.05):
        depth = len(cfg["model"]["widths"]) - 1
        t = sub.time.values
        for var, style in styles.items():
            y = sub[var].sel(scheme="gd", charge="D1").isel(step=0).median("seed").values
            ax.plot(t[1:], y[1:], style, color=f"C{i}", ms=4)
        ax.plot([], [], "s", color=f"C{i}", label=f"depth {depth}")
        drift = sub.drift.sel(scheme="gd", charge="D1").isel(step=0, time=-1).values
        res = sub.residual.sel(scheme="gd", charge="D1").isel(step=0, time=-1).values
        numbers.append(f"gradient descent η = {float(sub.h.sel(scheme='gd').values[0]):g}, depth {depth}, λ = 0.05: "
                       f"D_1 drift from e^(-2λt)D_1(0) at t = {t[-1]:g}, median {np.nanmedian(drift):.3e}; "
                       f"what the exact one-step law does not explain, median {np.nanmedian(res):.3e}, "
                       f"largest {np.nanmax(res):.3e}")
    ax.set_yscale("log")
    ax.set_xlabel("time t = kη (dimensionless)")
    ax.set_ylabel("|D_1 − e^(-2λt)D_1(0)|_F, seed median")
    for var, style in styles.items():
        ax.plot([], [], style, color="k", label={"drift": "measured drift", "predicted": "exact one-step law",
                                                 "residual": "residual (round-off)"}[var])
    ax.set_title("(b) gradient descent, λ = 0.05, coarsest η:\ndrift (dots) = exact one-step law (lines) + residual (dotted)",
                 fontsize="medium")
    ax.legend(fontsize="small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    figures.append(_save(fig, out, "b_gd_exact_law"))
    table = _verdict_table(points, ["D1", "D2", "D3", "D4"])
    return Section(claim, overrides, store, [table], numbers, figures)


# ---- (c) ----

def _shift_label(cfg):
    s = cfg["data"]["augment"]["shifts"]
    return "integer shifts Z_7" if s == "integer" else f"{len(s)} random shifts"


def _claim_c(claim, out, seeds, progress, say):
    from . import data as data_mod
    from .builders import build_data, build_model
    from .simulate import simulate

    ds, overrides, store = _run(claim, out, seeds, progress, say)
    points = _points(ds)
    numbers, figures = [], []
    fig, (ax,) = _figure()
    for _, label, sub, cfg in points:
        t = sub.time.values
        y = sub.drift.sel(scheme="gf-rk4", charge="data_shift").isel(step=-1).median("seed").values
        ax.plot(t, np.maximum(y, 1e-18), "o-", label=f"{cfg['model']['activation']}, {_shift_label(cfg)}")
    ax.set_yscale("log")
    ax.set_xlabel("time t (dimensionless)")
    ax.set_ylabel("|⟨θ̇_1, W_1K⟩| along RK4 gradient flow, median over seeds")
    ax.set_title("(c) restriction ⟨θ̇_1, W_1K⟩ = 0:\nkept only by the linear network with Z_7", fontsize="medium")
    ax.axhline(1e-15, color="grey", lw=0.8, ls="--")
    ax.text(t[1], 2e-15, "float64 round-off", color="grey", fontsize="small")
    ax.legend(fontsize="small")
    figures.append(_save(fig, out, "c_restriction_vs_time"))

    fig, (ax,) = _figure()
    exact = next(pt for pt in points if pt[3]["model"]["activation"] == "linear"
                 and pt[3]["data"]["augment"]["shifts"] == "integer")
    series = [(f"{s}", *_median_final(exact[2], s, "data_shift")) for s in ("momentum-rk4", "heavy-ball")]
    _ladder_plot(ax, series, "c − e^(-t/τ)c(0)")
    ax.set_title("(c) linear network, Z_7: momentum law c(t) = e^(-t/τ)c(0)", fontsize="medium")
    figures.append(_save(fig, out, "c_momentum_law_vs_step"))

    # how approximate: |c(θ_0)| of each seed against the number of quadrature shifts
    fig, (ax,) = _figure()
    base_cfg = exact[3]
    scan = [3, 5, 7, 9, 13, 19, 27, 41, 61]
    for act in ("linear", "relu"):
        cfg = json.loads(json.dumps(base_cfg))
        cfg["model"]["activation"] = act
        cfg["data"].pop("augment")
        model, base = build_model(cfg), build_data(cfg)
        rel = []
        for n in scan:
            aug = data_mod.augment(base, "cyclic_translations", n_shifts=n, degree=None)
            run = simulate(model, aug, dynamics="gf", method="euler", h=1e-3, n_steps=1, seeds=32)
            c0 = np.abs(run.charge_initial.sel(component=run.component_charge == "data_shift").values[:, 0])
            scale = run.scale.sel(charge="data_shift").isel(time=0).values
            rel.append(float(np.median(c0 / scale)))
        ax.plot(scan, np.maximum(rel, 1e-18), "o-", label=f"{act}")
        numbers.append(f"{act}: median |c(θ_0)|/(|θ̇_1||W_1||K|) over 32 seeds with n equally spaced shifts: "
                       + ", ".join(f"n={n}: {r:.1e}" for n, r in zip(scan, rel)))
    ax.axvline(7, color="grey", ls="--", lw=0.8)
    ax.text(7.3, 1e-9, "n = 7: exact for degree 1", color="grey", fontsize="small")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number n of equally spaced continuous shifts in the augmented set")
    ax.set_ylabel("median relative |⟨∇_{W_1}L, W_1K⟩| at initialisation")
    ax.set_xticks(scan, [str(n) for n in scan], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_title("(c) quadrature of the shift group:\nexact (linear) vs approximate (ReLU)", fontsize="medium")
    ax.legend(fontsize="small")
    figures.append(_save(fig, out, "c_quadrature"))
    table = _verdict_table(points, ["data_shift"])
    return Section(claim, overrides, store, [table], numbers, figures)


# ---- (d) ----

def _claim_d(claim, out, seeds, progress, say):
    from .builders import build_data, build_model
    from .diagnostics import ntk_identity

    # the NTK is tracked for the first (up to) four seeds: fewer when fewer are run
    watch = [] if seeds is None or seeds >= 4 else [f"record.watch_seeds={list(range(seeds))}"]
    ds, overrides, store = _run(claim, out, seeds, progress, say, watch)
    points = _points(ds)
    numbers, figures = [], []
    fig, (ax,) = _figure()
    series = []
    for i, (_, label, sub, cfg) in enumerate(points):
        width = cfg["model"]["widths"][1]
        for scheme, ls in (("gf-rk4", "-"), ("gd", "--")):  # one colour per width, one style per method
            series.append((f"{scheme}, width {width}", *_median_final(sub, scheme, "energy"), f"C{i}", ls))
    _ladder_plot(ax, series, "E = L + ∫|θ̇|²")
    ax.set_title("(d) energy identity E(T) = E(0):\nRK4 drift → 0 as h⁴, gradient descent's as η",
                 fontsize="medium")
    figures.append(_save(fig, out, "d_energy_vs_step"))

    fig, (ax,) = _figure()
    _, label, sub, cfg = points[0]
    if cfg["weight_decay"] != 0:  # E − L is ∫|θ̇|² only without weight decay (else also λ|θ|²/2)
        v.fail("weight_decay", cfg["weight_decay"], "claim (d)'s energy-identity figure is drawn for weight_decay = 0")
    comp = sub.component_charge.values == "energy"
    for scheme, style in (("gf-rk4", "-"), ("gd", "--")):
        t = sub.time.values
        loss = sub.loss.sel(scheme=scheme).isel(step=0, seed=0).values
        e = sub.charge_watch.sel(scheme=scheme).isel(step=0, watched_seed=0).values[:, comp][:, 0]
        dissipated = e - loss  # ∫|θ̇|², integrated by the run's own method
        ax.plot(t, loss, "o", ms=4, label=f"{scheme}: measured L(t)")
        ax.plot(t, loss[0] - dissipated, style, label=f"{scheme}: L(0) − ∫₀ᵗ|θ̇|² (the identity)")
    ax.set_xlabel("time t (dimensionless)")
    ax.set_ylabel("training loss (dimensionless)")
    ax.set_title(f"(d) width {cfg['model']['widths'][1]}, seed 0, h = {float(sub.h.values.max()):g}: "
                 f"L(t) against L(0) − ∫|θ̇|²", fontsize="medium")
    ax.legend(fontsize="small")
    figures.append(_save(fig, out, "d_energy_identity"))

    # the NTK along training, recorded by the runs themselves (record.track_ntk) for the watched seeds
    fig, axes = _figure(1, 2)
    widths, changes = [], []
    for i, (_, label, sub, cfg) in enumerate(points):
        model, data = build_model(cfg), build_data(cfg)
        k = int(np.nanargmin(sub.h.sel(scheme="gf-rk4").values))
        run = sub.sel(scheme="gf-rk4").isel(step=k)
        t = run.time.values
        change = run.ntk_change.transpose("watched_seed", "time").values
        align = run.ntk_alignment.transpose("watched_seed", "time").values
        top = run.ntk_eigenvalues.isel(ntk_rank=0).transpose("watched_seed", "time").values
        width = cfg["model"]["widths"][1]
        color = f"C{i}"
        axes[0].plot(t, np.nanmedian(change, axis=0), "o-", ms=3, color=color, label=f"width {width}")
        for row in change:
            axes[0].plot(t, row, "-", color=color, alpha=0.3, lw=0.8)
        widths.append(width)
        changes.append(change[:, -1])
        thT = sub.theta_final.sel(scheme="gf-rk4").isel(step=k).values
        ident = max(ntk_identity(model, data, thT[s])["relative_error"] for s in range(min(8, len(thT))))
        numbers.append(f"width {width}, RK4 at h = {float(run.h):g}, tracked along the run for {len(change)} watched seeds: "
                       f"NTK relative change |Θ(T) − Θ(0)|_F/|Θ(0)|_F at T = {t[-1]:g}, median {np.nanmedian(change[:, -1]):.3e} "
                       f"(range {np.nanmin(change[:, -1]):.3e}–{np.nanmax(change[:, -1]):.3e}); top eigenvalue "
                       f"λ₁(T)/λ₁(0), median {np.nanmedian(top[:, -1] / top[:, 0]):.3f}; alignment with the labels "
                       f"yᵀΘy/(|Θ|_F|y|²) from {np.nanmedian(align[:, 0]):.3f} to {np.nanmedian(align[:, -1]):.3f}; "
                       f"largest relative error of ṙ = −(1/N)Θr at θ(T): {ident:.1e}")
    axes[0].set_xlabel("time t (dimensionless)")
    axes[0].set_ylabel("|Θ(t) − Θ(0)|_F / |Θ(0)|_F (RK4 gradient flow)")
    axes[0].set_title("(d) empirical NTK along training, by width\n(thin: each watched seed; dots: their median)",
                      fontsize="medium")
    axes[0].legend(fontsize="small", loc="upper left")
    from .plots import fitted_slope

    ax = axes[1]
    med = np.array([np.nanmedian(c) for c in changes])
    ax.plot(widths, med, "o-", label=f"median over watched seeds: slope {fitted_slope(np.array(widths, float), med):.2f}")
    for w, c in zip(widths, changes):
        ax.plot([w] * len(c), c, ".", color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("hidden width")
    ax.set_ylabel("|Θ(T) − Θ(0)|_F / |Θ(0)|_F (RK4 gradient flow)")
    ax.set_title("(d) NTK change over training against width\n(small change: lazy training; large change: rich)",
                 fontsize="medium")
    ax.legend(fontsize="small", loc="lower left")
    figures.append(_save(fig, out, "d_ntk_change_vs_width"))
    table = _verdict_table(points, ["energy"])
    return Section(claim, overrides, store, [table], numbers, figures)


_RUNNERS = {"a": _claim_a, "b": _claim_b, "c": _claim_c, "d": _claim_d}


# ---- what reproduce owns in its output folder ----
# OWNED_FILE records the SHA-256 of every report and figure reproduce wrote: a file there with another
# hash is the user's (or was edited), and is replaced only with overwrite.

OWNED_FILE = ".reproduce-outputs.json"
_OVERWRITE = contextvars.ContextVar("reproduce_overwrite", default=False)  # this run's --overwrite, for _save


class OutputExistsError(FileExistsError):
    """The output folder holds results or files that reproduce would replace."""


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _owned(out: Path) -> dict:
    try:
        record = json.loads((out / OWNED_FILE).read_text())
    except (OSError, ValueError):
        return {"files": {}}
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else {"files": {}}


def _write_owned(out: Path, record: dict):
    from .store import _write_json_atomic

    _write_json_atomic(out / OWNED_FILE, record)


def _own(path: Path):
    out = path.parent if path.name == "report.md" else path.parent.parent
    record = _owned(out)
    record["files"][path.relative_to(out).as_posix()] = _sha256(path)
    _write_owned(out, record)


def _check_owned(path: Path, overwrite: bool):
    if overwrite or not path.exists():
        return
    out = path.parent if path.name == "report.md" else path.parent.parent
    rel = path.relative_to(out).as_posix()
    if _owned(out)["files"].get(rel) != _sha256(path):
        raise OutputExistsError(f"{str(path)!r} exists and was not written by `noether-sim reproduce` (or was "
                                f"changed since): rerun with --overwrite to replace it, or choose another --out")


def _settings_text(cfg) -> str:
    return f"{cfg['seeds']['count']} seeds per block"


def _check_outputs(out: Path, claims, seeds, overwrite: bool):
    """Before any work: each claim's store is absent or of these settings (else replaced with
    ``overwrite``, refused without), and report.md is absent or reproduce's own."""
    from .store import NotAStoreError, StoreWriter, fingerprint, read_study
    from .study import study_provenance
    from .sweep import plan

    problems, replace = [], []
    for c in claims:
        store = out / CLAIMS[c].config.removesuffix(".toml")
        if not store.exists():
            continue
        p = plan(EXAMPLES / CLAIMS[c].config, [f"seeds.count={seeds}"] if seeds is not None else [])
        try:
            meta = read_study(store)
        except NotAStoreError:
            if any(store.iterdir()):
                problems.append(f"{str(store)!r} exists and is not claim ({c})'s store")
            continue
        if meta.get("fingerprint") != fingerprint({"config": p.config, "points": p.points}):
            earlier = (meta.get("points") or [meta["config"]])[0]
            problems.append(f"claim ({c})'s store {str(store)!r} holds an earlier run of other settings "
                            f"({_settings_text(earlier)}; this run: {_settings_text(p.points[0] if p.points else p.config)})")
            replace.append((store, p))
    report = out / "report.md"
    if report.exists() and _owned(out)["files"].get("report.md") != _sha256(report):
        problems.append(f"{str(report)!r} exists and was not written by `noether-sim reproduce` (or was changed since)")
    if problems and not overwrite:
        raise OutputExistsError(f"{str(out)!r} holds results this run would replace: {'; '.join(problems)}. Rerun "
                                f"with --overwrite to replace them, or choose another --out")
    for store, p in replace:  # overwrite: the store's own files only (as `run --overwrite`)
        StoreWriter(store, p.config, study_provenance(), points=p.points, overwrite=True,
                    extra={"sweep": p.layout()}).close()


def _report_text(sections, full, seeds) -> str:
    from .ensemble import provenance

    prov = provenance()
    lines = ["# Noether: the more things change, the more stay the same — reproduced", "",
             f"Written by `noether-sim reproduce{' --full' if full else f' --seeds {seeds}' if seeds else ''}`; every number below was measured "
             f"by the run that wrote this file (noether_sim {prov.get('noether_sim_version', '?')}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", ""]
    for s in sections:
        c = s.claim
        lines += [f"## ({c.key}) {c.title}", "", c.statement, "",
                  f"Configuration: `examples/paper/{c.config}`"
                  + (f" with `{' '.join('--set ' + shlex.quote(o) for o in s.overrides)}`" if s.overrides else "")
                  + f"; store `{s.store}` (`noether_sim.load`).", "", "Verdicts (see 'What a verdict means' "
                  "below; basis 'exact law': the step's exact law holds to round-off, 'ladder': extrapolation "
                  "to h → 0; docs/theory.md, 'What integrators do to charges'):", ""]
        lines += s.tables + [""] + [f"- {n}" for n in s.numbers] + [""]
        lines += [f"![{Path(f).stem}]({f})" for f in s.figures] + [""]
    lines += ["## What a verdict means", "", VERDICT_MEANING, ""]
    return "\n".join(lines)


VERDICT_MEANING = """\
Each charge of each seed gets one verdict about the *flow* (the dynamics as h → 0), reached one of two ways
(the `basis` column):

- **exact law**: the dynamics' step has an exact discrete law for this charge (gradient descent's
  q' = (1 − ηλ)^d q + η²q(g); heavy ball's J_{k+1} = βJ_k; a conformal symplectic splitting's e^{−t/τ} decay), and
  its residual stays within 10 round-off floors (ε·√steps·scale) at every step size. Then all of the drift is the
  step's own and vanishes with it: **conserved by the flow**. A residual above 1000 floors means the symmetry
  itself fails: **broken by the flow**.
- **ladder**: no exact law (Runge–Kutta methods, the energy under descent): the final charge at h, h/2, h/4, … is
  extrapolated to h → 0 (repeated Richardson, as far as the ladder shows the powers of h it removes).
  **broken by the flow** if the extrapolated drift d* exceeds 5 times its uncertainty u (and the floor);
  **conserved by the flow** if not, and u is below 10⁻⁶ of the charge's scale; **inconclusive** otherwise
  (refine the ladder).

Under momentum the model's charges move ("broken by the flow"): what the symmetry keeps is their momentum law
(τq̈ + q̇ + 2λq = 2τq(θ̇), and its exact discrete analogue for heavy ball and Nesterov), judged in the
`law ...` part of the basis. `mixed: …` counts seeds with different verdicts. The laws are in docs/theory.md."""


__all__ = ["CLAIMS", "reproduce"]
