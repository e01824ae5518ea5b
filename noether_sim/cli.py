"""The ``noether-sim`` command: run a study, report it, plot it, list what exists.

Exit codes: 0 ok; 1 the run (or reading a store) failed, or `verify` found damage; 2 bad usage, bad
configuration, or a store that cannot be written (another study, or another writer holds it);
130 interrupted by Ctrl-C (the finished blocks are kept in the store).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = ("exit codes: 0 ok, 1 failed run, 2 bad usage or bad configuration, "
          "130 interrupted (Ctrl-C; finished blocks are kept)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="noether-sim",
        description="Integrate ensembles of network training dynamics and measure the charges they conserve "
                    "or break, separating discretisation error from true breaking.",
        epilog=EPILOG)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run a study (the built-in default study if no CONFIG)",
                         description="Run a study: every method across its ladder of step sizes, every seed. "
                                     "Prints the summary table, writes the result store and the figures.",
                         epilog=EPILOG)
    run.add_argument("config", nargs="?", metavar="CONFIG.toml",
                     help="study configuration (TOML; see README 'Study configuration'); "
                          "default: the built-in default study (examples/default_study.toml)")
    run.add_argument("--out", metavar="PATH",
                     help="where to write the store and its figures/ (default: results/<study name>); "
                          "an unfinished store of the same study there is resumed, another study's is "
                          "refused unless --overwrite")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one configuration key (dotted, TOML-typed value), e.g. --set seeds.count=64 "
                          "--set 'methods.gf-rk4.step_sizes=[0.1, 0.05, 0.025]'; repeatable")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress, no compile notices and no table (without a terminal, progress is a log "
                          "line every few seconds)")
    run.add_argument("--no-figures", action="store_true", help="do not draw the figures")
    run.add_argument("--overwrite", action="store_true",
                     help="replace a store of a different study at --out (only the store's own files are removed)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="run blocks on a local Dask cluster of N worker processes (default: in this process)")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run blocks on the workers of a running `dask scheduler` (the store must be on a "
                            "file system every worker sees)")
    run.add_argument("--scheduler-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="how long to wait for the scheduler to answer before giving up (default 30)")

    st = sub.add_parser("status", help="print how far a study store is: blocks done / total, and its writer",
                        description="Print a store's progress (blocks done / total), whether it is complete, "
                                    "and the run holding its lock, if any.", epilog=EPILOG)
    st.add_argument("path", metavar="PATH", help="the study store")

    ver = sub.add_parser("verify", help="check every finished block of a store against its checksums",
                         description="Check every finished block's files (inventory, sizes, CRC-32 checksums "
                                     "recorded when it was written). Exits 1 naming every damaged block.",
                         epilog=EPILOG)
    ver.add_argument("path", metavar="PATH", help="the study store")

    rep = sub.add_parser("report", help="print the summary of a saved study",
                         description="Print the summary table of a saved study (an interrupted store: "
                                     "its finished blocks, marked INCOMPLETE).", epilog=EPILOG)
    rep.add_argument("path", metavar="PATH", help="the study store (made by `noether-sim run`)")

    tab = sub.add_parser("table", help="write a saved study's numbers as CSV or JSON (every step size)",
                         description="Write one row per (sweep point,) method, step size and charge — every step "
                                     "size of each ladder, not only the finest — with the final drift statistics "
                                     "over seeds and the ladder's fitted order, h → 0 drift and verdict. CSV (the "
                                     "default) or JSON, to stdout or --out.", epilog=EPILOG)
    tab.add_argument("path", metavar="PATH", help="the study store (made by `noether-sim run`)")
    fmt = tab.add_mutually_exclusive_group()
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="CSV, a header line first (default)")
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="JSON: a list of objects")
    tab.add_argument("--out", metavar="FILE", help="write here instead of stdout")

    plot = sub.add_parser("plot", help="draw the figures of a saved study",
                          description="Draw every figure of a saved study as PNG and PDF.", epilog=EPILOG)
    plot.add_argument("path", metavar="PATH", help="the study store (made by `noether-sim run`)")
    plot.add_argument("--out", metavar="DIR", help="folder for the figures (default: PATH/figures)")

    disc = sub.add_parser("discover", help="count and find the conservation laws of a study's model",
                          description="Count the independent conservation laws of the study's model (codimension "
                                      "of the Lie algebra generated by the per-sample gradient fields), solve for "
                                      "its linear and quadratic laws, and check the charge catalogue against them. "
                                      "Exit code 1 when a count cannot be decided (too small a singular-value gap, "
                                      "or the rank still growing at the deepest bracket). Cost grows fast with the "
                                      "number of parameters: seconds up to ~200, minutes at ~500.",
                          epilog=EPILOG)
    disc.add_argument("config", metavar="CONFIG.toml",
                      help="study configuration: its model (and, with --study-data, its data); e.g. "
                           "examples/default_study.toml with --set 'model.widths=[6, 5, 6]'")
    disc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override one configuration key, e.g. --set 'model.widths=[4, 3, 2]'; repeatable")
    disc.add_argument("--flow", choices=("gradient", "momentum", "both"), default="both",
                      help="gradient flow, momentum flow (laws h(θ, θ̇, t)), or both (default)")
    disc.add_argument("--tau", type=float, default=1.0, help="momentum time constant τ (default 1)")
    disc.add_argument("--study-data", action="store_true",
                      help="use the study's data points (laws for every subset of them) instead of generic points")
    disc.add_argument("--points", type=int, default=2, help="generic parameter points that must agree (default 2)")
    disc.add_argument("--seed", type=int, default=0, help="seed of the sampled points and data (default 0)")
    disc.add_argument("--figure", metavar="PATH.png", help="also draw the singular values with the gap that sets the count")
    disc.add_argument("--verbose", "-v", action="store_true", help="print the details under the table")

    repro = sub.add_parser("reproduce", help="run the paper's four claims and write figures and report.md",
                           description="Reproduce the four claims of Gluch & Urbanke (arXiv 2104.05508): (a) bounded "
                                       "weights from the activation's symmetry, (b) balance of linear layers, (c) "
                                       "data augmentation restrictions, (d) energy identity and the NTK. Each is a "
                                       "study under examples/paper/; writes one store per claim, DIR/figures/ and "
                                       "DIR/report.md.", epilog=EPILOG)
    repro.add_argument("claims", nargs="*", metavar="CLAIM", help="a, b, c or d (default: all four)")
    repro.add_argument("--out", metavar="DIR", default="paper", help="output folder (default: paper)")
    repro.add_argument("--full", action="store_true",
                       help="paper-scale ensembles (1024 seeds per block; the default is sized for a few minutes)")
    repro.add_argument("--seeds", type=int, metavar="N", help="seeds per block in every claim (a quick look: e.g. 8)")
    repro.add_argument("--quiet", "-q", action="store_true", help="no progress and no compile notices")
    repro.add_argument("--overwrite", action="store_true",
                       help="replace what DIR holds from a run of other settings, and a report.md or figure there "
                            "that reproduce did not write (default: refuse, exit 2; a run of the same settings resumes)")

    sub.add_parser("list", help="list the models, data, initialisations, dynamics, methods and charges",
                   description="List everything a study configuration can name, one line each.", epilog=EPILOG)
    return p


@contextlib.contextmanager
def _quiet_log(quiet: bool):
    """--quiet: the package's INFO messages (compile notices, progress lines) are not shown."""
    import logging

    from .ensemble import log

    level = log.level
    if quiet:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _err(msg: str):
    print(f"noether-sim: error: {msg}", file=sys.stderr)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = {"run": cmd_run, "report": cmd_report, "table": cmd_table, "plot": cmd_plot, "list": cmd_list, "status": cmd_status,
                "verify": cmd_verify, "discover": cmd_discover, "reproduce": cmd_reproduce}[args.command](args)
    except KeyboardInterrupt:
        _err("interrupted")
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        _leave_running_kernels()
    return code


def _leave_running_kernels():
    """After Ctrl-C (finished blocks saved, the store's lock released), exit at once rather than wait for
    kernel calls already running: compiled code cannot be stopped, and their results are discarded."""
    from .ensemble import kernels_running

    if kernels_running():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


def cmd_reproduce(args) -> int:
    from ._validate import ConfigError
    from .paper import reproduce

    from .execute import StudyInterrupted
    from .store import StoreLockedError, StoreMismatchError

    try:
        with _quiet_log(args.quiet):
            report = reproduce(args.claims, args.out, full=args.full, seeds=args.seeds, progress=not args.quiet,
                               log=lambda msg: print(msg, flush=True), overwrite=args.overwrite)
    except (ConfigError, StoreLockedError, StoreMismatchError, FileExistsError) as err:
        _err(str(err))
        return EXIT_USAGE
    except StudyInterrupted as stop:
        _err(f"interrupted by Ctrl-C; {len(stop.kept)} finished blocks of the running claim are kept in its store "
             f"under {args.out}: rerun the same command to resume (finished claims rerun from their stores)")
        return EXIT_INTERRUPTED
    print(f"report: {report}")
    return EXIT_OK


def cmd_run(args) -> int:
    from ._validate import ConfigError
    from .sweep import plan as make_plan

    if args.workers is not None and args.workers < 1:
        _err(f"--workers {args.workers} is invalid: must be an integer >= 1")
        return EXIT_USAGE
    try:
        plan = make_plan(args.config, args.overrides)
    except ConfigError as err:
        _err(str(err))
        return EXIT_USAGE

    from .execute import SchedulerUnavailableError, StudyInterrupted, n_blocks, run_study
    from .tables import format_any_summary
    from .store import StoreLockedError, StoreMismatchError

    out = Path(args.out) if args.out else Path("results") / plan.name
    progress = not args.quiet  # without a terminal: a log line every few seconds (ensemble.make_progress)
    say = (lambda *a, **k: None) if args.quiet else print
    total = n_blocks(plan)
    base = plan.points[0] if plan.points else plan.config
    points = f"{len(plan.points)} sweep points × " if plan.points else ""
    say(f"study {plan.name!r}: {base['seeds']['count']} seeds, {points}{len(base['methods'])} methods, "
        f"{total} blocks -> {out}", flush=True)
    started = time.perf_counter()
    try:
        with _quiet_log(args.quiet):
            ds = run_study(plan=plan, out=out, workers=args.workers, scheduler=args.scheduler,
                           overwrite=args.overwrite, progress=progress, log=lambda m: say(m, flush=True),
                           scheduler_timeout=args.scheduler_timeout)
    except (StoreLockedError, StoreMismatchError, FileExistsError, ConfigError) as err:
        _err(str(err))
        return EXIT_USAGE
    except SchedulerUnavailableError as err:
        _err(f"{err}. Nothing was run and no store was written")
        return EXIT_FAILED
    except StudyInterrupted as stop:
        from .store import describe_blocks

        _err(f"interrupted by Ctrl-C after {time.perf_counter() - started:.1f} s. Kept {len(stop.kept)} of "
             f"{total} finished blocks in {out}: {describe_blocks(stop.kept)}. The store is marked incomplete; "
             f"rerun the same command to resume it, load the finished blocks with "
             f"noether_sim.load({str(out)!r}, allow_partial=True) or `noether-sim report {out}`.")
        return EXIT_INTERRUPTED
    except Exception as err:  # a failed run: say what, keep what finished
        _err(f"the run failed: {type(err).__name__}: {err} (finished blocks are kept in {out}, marked incomplete; "
             f"rerun the same command to resume)")
        return EXIT_FAILED
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print()
        print(format_any_summary(ds))
    say(f"\nstore: {out}  (noether_sim.load({str(out)!r}))")
    if not args.no_figures and "seed" not in ds.dims:
        say("figures: none (they plot per-seed records; this study kept statistics only)")
    elif not args.no_figures:
        from .plots import save_figures

        paths = save_figures(ds, out / "figures")
        say(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')} (and .pdf)")
    say(f"done in {time.perf_counter() - started:.1f} s (integration and store {elapsed:.1f} s)")
    return EXIT_OK


def cmd_discover(args) -> int:
    from ._validate import ConfigError
    from .builders import build_data, build_model
    from .config import load_config
    from .discover import discover, format_table

    try:
        cfg = load_config(args.config, args.overrides)
        model = build_model(cfg)
        data = build_data(cfg) if args.study_data else None
        flows = ("gradient", "momentum") if args.flow == "both" else (args.flow,)
        results = [discover(model, data, points=args.points, seed=args.seed, flow=f, tau=args.tau) for f in flows]
    except ConfigError as err:
        _err(str(err))
        return EXIT_USAGE
    print(format_table(results))
    for r in results:
        print(f"{r.flow}: {r.message}")
        for text in r.catalogue.missing:
            print(f"  missing from the catalogue: {text}")
        for text in r.catalogue.notes:
            print(f"  note: {text}")
    if args.verbose:
        for r in results:
            print()
            print(r)
    if args.figure:
        from .discover import plot_discovery

        fig = plot_discovery(results)
        fig.savefig(args.figure, dpi=120)
        print(f"figure: {args.figure}")
    return EXIT_OK if all(r.decided for r in results) else EXIT_FAILED


def cmd_status(args) -> int:
    from .store import NotAStoreError, describe_blocks, describe_holder, store_status

    try:
        st = store_status(args.path)
    except NotAStoreError as err:
        _err(str(err))
        return EXIT_USAGE
    points = f", {st['points']} sweep points" if st["points"] else ""
    state = "complete" if st["complete"] else "DAMAGED" if st["damaged"] else "incomplete"
    print(f"{args.path}: study {st['name']!r}{points}: {st['done']} / {st['total']} blocks done, {state}")
    if st["damaged"]:
        print(f"the store was marked complete but {len(st['damaged'])} blocks are gone: {describe_blocks(st['damaged'])}; "
              f"`noether-sim verify {args.path}` names every damaged block; rerun the study into it to recompute them")
    if st["lock"]:
        stale = " (stale: that process is gone; the next run takes the lock over)" if st["lock_stale"] else ""
        print(f"being written by {describe_holder(st['lock'])}{stale}")
    if st["missing"] and len(st["missing"]) <= 20:
        print(f"missing: {describe_blocks(st['missing'])}")
    return EXIT_OK


def cmd_verify(args) -> int:
    from .store import NotAStoreError, block_status, describe_blocks, verify_store

    try:
        damaged = verify_store(args.path)
        done, missing = block_status(args.path)
    except NotAStoreError as err:
        _err(str(err))
        return EXIT_USAGE
    for name, problems in damaged.items():
        print(f"DAMAGED {name}: {'; '.join(problems)}")
    if missing:
        print(f"not finished ({len(missing)}): {describe_blocks(missing)}")
    if damaged:
        _err(f"{len(damaged)} damaged components in {args.path}: {', '.join(damaged)}; rerun the study into the "
             f"same --out to recompute them")
        return EXIT_FAILED
    print(f"{args.path}: {len(done)} finished blocks intact (every file present, checksums match)")
    return EXIT_OK


def _load_for_cli(path):
    """(dataset, exit code): loads an interrupted store's finished blocks, with a warning."""
    from .results import load
    from .store import DamagedStoreError, IncompleteStoreError, NotAStoreError

    try:
        return load(path), EXIT_OK
    except NotAStoreError as err:
        _err(str(err))
        return None, EXIT_USAGE
    except (IncompleteStoreError, DamagedStoreError) as err:
        print(f"noether-sim: warning: {err}", file=sys.stderr)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # said above
                return load(path, allow_partial=True), EXIT_OK
        except ValueError as err2:  # nothing finished at all
            _err(str(err2))
            return None, EXIT_FAILED


def cmd_report(args) -> int:
    from .tables import format_any_summary

    ds, code = _load_for_cli(args.path)
    if ds is None:
        return code
    print(format_any_summary(ds))
    return EXIT_OK


def cmd_table(args) -> int:
    from .tables import write_table

    ds, code = _load_for_cli(args.path)
    if ds is None:
        return code
    write_table(ds, args.out or sys.stdout, args.fmt or "csv")
    if args.out:
        print(args.out)
    return EXIT_OK


def cmd_plot(args) -> int:
    from .plots import save_figures

    ds, code = _load_for_cli(args.path)
    if ds is None:
        return code
    for path in save_figures(ds, args.out or Path(args.path) / "figures"):
        print(path)
    return EXIT_OK


def cmd_list(args) -> int:
    from .config import DATA_KINDS, INIT_KINDS, MODEL_KINDS
    from .dynamics import DYNAMICS, methods_for
    from .methods import EXPLICIT_METHODS, IMPLICIT_METHODS, SPLITTING_METHODS

    def section(title, items):
        print(title)
        width = max(len(k) for k in items)
        for k, text in items.items():
            print(f"  {k.ljust(width)}  {text}")
        print()

    section("models (model.kind):", MODEL_KINDS)
    section("data (data.kind):", DATA_KINDS)
    section("initialisations (init.kind):", INIT_KINDS)
    section("dynamics (methods.<label>.dynamics; simulate(dynamics=…)):",
            {name: f"{text} [methods: {', '.join(methods_for(name)) or 'none, its own algorithm'}]"
             for name, text in DYNAMICS.items()})
    methods = {}
    for name, tab in {**EXPLICIT_METHODS, **IMPLICIT_METHODS}.items():
        p = tab.properties()
        flags = [f"{p['stages']} stages", f"order conditions hold to order {p['order conditions satisfied up to']}",
                 "explicit" if p["explicit"] else "implicit",
                 "symplectic" if p["symplectic condition"] else "not symplectic",
                 "adaptive (not for ladders)" if p["adaptive"] else "fixed step"]
        if "embedded order" in p:
            flags.append(f"embedded order {p['embedded order']}")
        methods[name] = f"{tab.description} [{', '.join(flags)}]"
    for name, split in SPLITTING_METHODS.items():
        p = split.properties()
        methods[name] = (f"{split.description} [{p['sub-steps']} sub-steps, "
                         f"{'conformal symplectic' if p['conformal symplectic'] else 'not conformal symplectic'}, "
                         f"momentum flow only]")
    section("methods (methods.<label>.method; simulate(method=…)):", methods)
    section("options (in a [methods.<label>] table, or simulate(…) keywords):", {
        "tau": "momentum, heavy_ball, nesterov: time constant of τθ̈ + θ̇ = −∇L − λθ (β = e^{−h/τ}, η = h²/τ)",
        "velocity": "momentum dynamics: initial θ̇ = 'zero' (default), 'gradient' or a scale σ (Gaussian entries)",
        "track_law": "momentum flow: integrate ∫D(q), ∫D(p) to check the balance law (default true)",
        "solve_tol, max_solve_iters, max_halvings": "gl1, gl2, gl3: fixed-point tolerance (1e-14), sweeps per "
                                                     "attempt (100), step halvings before failing (6)",
        "rtol, atol, max_steps": "dopri5 (Python API only: not for ladders)",
        "learning_rate, beta": "heavy_ball, nesterov (Python API): instead of (h, tau)",
        "track_energy": "gf, gd, momentum by a Runge–Kutta method: record the energy E = L + λ|θ|²/2 (+ τ|p|²/2) "
                        "+ ∫|θ̇|² as the charge 'energy' (default false)",
        "beta1, beta2, eps": "adam, adamw (0.9, 0.999, 1e-8), rmsprop (beta2 = PyTorch's alpha, 0.99; eps 1e-8), "
                             "lion (0.9, 0.99): PyTorch's / optax's names and defaults; the learning rate is h",
    })
    section("recording ([record]; watch_seeds and track_ntk are also simulate(…) keywords):", {
        "charges": "'all' (default) or a list of charge names to keep",
        "watch_seeds": "seed ids whose full charge vectors are kept at every save time",
        "final_weights": "keep θ(T) of every seed (large; simulate always keeps it)",
        "track_ntk": "the watched seeds' empirical NTK at every save time: ntk_change, ntk_eigenvalues, "
                     "ntk_alignment (needs watch_seeds and a hidden layer; default false)",
    })
    section("data augmentation ([data.augment]; data.augment(…)):", {
        "cyclic_translations": "inputs are length-d signals; continuous cyclic shifts (rotations of the real "
                               "Fourier pairs). shifts = 'quadrature' (default: exact for models of input degree "
                               "<= degree, n_shifts to override), 'integer' (the group Z_d) or a list of shifts",
        "rotations": "rotations in the disjoint coordinate planes = [[i, j], …], n_angles per plane (default "
                     "2·degree + 1)",
    })
    section("charges (record.charges):", {
        "D<i>": "deep_linear, i = 1 … L−1: layer balance W_{i+1}ᵀW_{i+1} − W_iW_iᵀ (− b_ib_iᵀ with biases) of "
                "hidden layer i, an n_i × n_i symmetric quadratic charge, conserved by gradient flow",
        "r<i>": "mlp, hidden layer i: per-neuron rescale charges |w_in|² + b² − α|w_out|² (α the activation's "
                "degree); conserved for homogeneous activations, the same expression (α = 1) as a control on "
                "tanh, softplus, GELU",
        "T": "mlp with loss = softmax_ce: translation charges, the sum over classes of b_L and of each column "
             "of W_L (linear)",
        "S": "mlp with normalised_first_layer: scale charges |w_k|² of the normalised rows of W_1",
        "D<i> (mlp)": "mlp with the identity activation: every entry of the balance matrix of hidden layer i",
        "N": "mlp with normalisation = layer | rms: scale |W_1|² + |b_1|² of the normalised first layer "
             "(law: + η²(|G_1|² + |g_b1|²) per GD step)",
        "M": "mlp with normalisation = layer: mean-shift translations, Σ_k W_1[k, c] per column c and Σ_k b_1[k]",
        "JT": "mlp (or LoRA on the last layer) with loss = softmax_ce under momentum dynamics: the translations' "
              "momenta; law e^{−t/τ}JT(0), and T + τ·JT is constant",
        "D<l>, J<l> (lora)": "low-rank adapter on layer l: B_lᵀB_l − A_lA_lᵀ (r × r), and under momentum "
                             "antisym(A_lP_Aᵀ − P_BᵀB_l)",
        "J<i>": "deep_linear under momentum dynamics: isometric charges, the antisymmetric part of "
                "W_iP_iᵀ + b_ip_bᵀ − P_{i+1}ᵀW_{i+1}; exact law J(t) = e^{−t/τ}J(0)",
        "data_<name>": "augmented data ([data.augment]): c = ⟨θ̇_1, W_1K⟩ per generator K (shift, rot<i>-<j>); "
                       "law 0 under gradient flow and descent, e^{−t/τ}c(0) under momentum dynamics",
        "energy": "track_energy = true: E = L + λ|θ|²/2 (+ τ|p|²/2) + ∫|θ̇|², law E(0)",
    })
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
