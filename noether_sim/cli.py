"""The ``noether-sim`` command: run a study, report it, plot it, list what exists.

Exit codes: 0 ok; 1 the run (or reading a store) failed; 2 bad usage or bad configuration;
130 interrupted by Ctrl-C (the finished blocks are kept in the store).
"""

from __future__ import annotations

import argparse
import sys
import time
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
                          "an earlier study store there is replaced")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one configuration key (dotted, TOML-typed value), e.g. --set seeds.count=64 "
                          "--set 'methods.gf-rk4.step_sizes=[0.1, 0.05, 0.025]'; repeatable")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bars and no table (progress is also off when stderr is not a terminal)")
    run.add_argument("--no-figures", action="store_true", help="do not draw the figures")

    rep = sub.add_parser("report", help="print the summary of a saved study",
                         description="Print the summary table of a saved study (an interrupted store: "
                                     "its finished blocks, marked INCOMPLETE).", epilog=EPILOG)
    rep.add_argument("path", metavar="PATH", help="the study store (made by `noether-sim run`)")

    plot = sub.add_parser("plot", help="draw the figures of a saved study",
                          description="Draw every figure of a saved study as PNG and PDF.", epilog=EPILOG)
    plot.add_argument("path", metavar="PATH", help="the study store (made by `noether-sim run`)")
    plot.add_argument("--out", metavar="DIR", help="folder for the figures (default: PATH/figures)")

    sub.add_parser("list", help="list the models, data, initialisations, dynamics, methods and charges",
                   description="List everything a study configuration can name, one line each.", epilog=EPILOG)
    return p


def _err(msg: str):
    print(f"noether-sim: error: {msg}", file=sys.stderr)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": cmd_run, "report": cmd_report, "plot": cmd_plot, "list": cmd_list}[args.command](args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


def cmd_run(args) -> int:
    from ._validate import ConfigError
    from .config import load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        _err(str(err))
        return EXIT_USAGE

    from .store import StoreWriter, expected_blocks
    from .results import format_summary, summary_rows
    from .study import StudyInterrupted, run_study, study_provenance

    out = Path(args.out) if args.out else Path("results") / cfg["name"]
    progress = not args.quiet and sys.stderr.isatty()
    say = (lambda *a, **k: None) if args.quiet else print
    try:
        writer = StoreWriter(out, cfg, study_provenance())
    except (FileExistsError, OSError) as err:
        _err(str(err))
        return EXIT_USAGE
    n_blocks = len(expected_blocks(cfg))
    say(f"study {cfg['name']!r}: {cfg['seeds']['count']} seeds, {len(cfg['methods'])} methods, "
        f"{n_blocks} (method, step size) blocks -> {out}", flush=True)
    started = time.perf_counter()
    try:
        ds = run_study(cfg, writer, progress=progress)
    except StudyInterrupted as stop:
        kept = ", ".join(f"{lb} h={h:.12g}" for lb, _, h in stop.kept) or "none"
        _err(f"interrupted by Ctrl-C after {time.perf_counter() - started:.1f} s. Kept {len(stop.kept)} of "
             f"{n_blocks} finished (method, step size) blocks in {out}: {kept}. The store is marked incomplete; "
             f"load them with noether_sim.load({str(out)!r}, allow_partial=True) or `noether-sim report {out}`.")
        return EXIT_INTERRUPTED
    except Exception as err:  # a failed run: say what, keep what finished
        _err(f"the run failed: {type(err).__name__}: {err} (finished blocks are kept in {out}, marked incomplete)")
        return EXIT_FAILED
    from dataclasses import asdict

    writer.finish([asdict(r) for r in summary_rows(ds)])
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print()
        print(format_summary(ds))
    say(f"\nstore: {out}  (noether_sim.load({str(out)!r}))")
    if not args.no_figures:
        from .plots import save_figures

        paths = save_figures(ds, out / "figures")
        say(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')} (and .pdf)")
    say(f"done in {time.perf_counter() - started:.1f} s (integration and store {elapsed:.1f} s)")
    return EXIT_OK


def _load_for_cli(path):
    """(dataset, exit code): loads an interrupted store's finished blocks, with a warning."""
    from .results import load
    from .store import IncompleteStoreError, NotAStoreError

    try:
        return load(path), EXIT_OK
    except NotAStoreError as err:
        _err(str(err))
        return None, EXIT_USAGE
    except IncompleteStoreError as err:
        print(f"noether-sim: warning: {err}", file=sys.stderr)
        try:
            return load(path, allow_partial=True), EXIT_OK
        except ValueError as err2:  # nothing finished at all
            _err(str(err2))
            return None, EXIT_FAILED


def cmd_report(args) -> int:
    from .results import format_summary

    ds, code = _load_for_cli(args.path)
    if ds is None:
        return code
    print(format_summary(ds))
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
        "J<i>": "deep_linear under momentum dynamics: isometric charges, the antisymmetric part of "
                "W_iP_iᵀ + b_ip_bᵀ − P_{i+1}ᵀW_{i+1}; exact law J(t) = e^{−t/τ}J(0)",
    })
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
