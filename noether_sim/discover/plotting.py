"""The figure of a discovery: singular values of the bracket span and the gap that sets the count.
"""

from __future__ import annotations

import numpy as np

from .._validate import fail
from .discovery import DiscoveryResult


def plot_discovery(results, point: int = 0):
    """Singular values of the generated span at one sampled point, one panel per result, with the gap
    that sets the rank (and so the count) marked. Returns a matplotlib Figure (no pyplot state).

    Parameters
    ----------
    results : list of DiscoveryResult
        One panel each.
    point : int
        Which sampled point's singular values to show.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import noether_sim as ns
    >>> from noether_sim.discover import plot_discovery
    >>> fig = plot_discovery([ns.discover(ns.DeepLinear((4, 3, 3)))])
    >>> len(fig.axes)
    1
    """
    from matplotlib.figure import Figure

    results = [results] if isinstance(results, DiscoveryResult) else list(results)
    if not results:
        fail("results", results, "must hold at least one DiscoveryResult")
    fig = Figure(figsize=(5.2 * len(results), 4.0), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, r in zip(axes, results):
        d = r.points[point].decision
        s = np.maximum(d.singular_values, 1e-20)  # exact zeros (fewer vectors than dimensions) drawn at 1e-20
        idx = np.arange(1, s.size + 1)
        kept = idx <= d.rank
        ax.semilogy(idx[kept], s[kept], "o", ms=3, color="C0", label=f"kept: dim Lie = {d.rank}")
        ax.semilogy(idx[~kept], s[~kept], "x", ms=4, color="C3",
                    label=f"round-off: {s.size - d.rank} conservation law{'s' if s.size - d.rank != 1 else ''}")
        ax.axhline(d.floor, color="0.6", lw=0.8, ls=":", label="round-off floor (ε·rows)")
        ax.axhline(d.tolerance, color="C2", lw=1.0, ls="--", label=f"rank tolerance {d.tolerance:.1e}")
        if d.rank < s.size:
            ax.annotate("", xy=(d.rank + 0.5, s[d.rank]), xytext=(d.rank + 0.5, s[d.rank - 1]),
                        arrowprops=dict(arrowstyle="<->", color="k"))
        p = r.points[point]
        verdict = ("decided" if r.decided else "UNDECIDED: " + ("gap too small" if not d.decided else
                   "rank still growing at max depth" if not p.stable else "points disagree"))
        ax.text(0.03, 0.03, f"gap ×{d.gap:.1e}\nnext largest ×{d.next_gap:.1e}\n"
                            f"rank by bracket depth {list(p.rank_by_depth)}\n{verdict}",
                transform=ax.transAxes, fontsize=8, va="bottom")
        row = r.summary_row()
        ax.set_title(f"{row['model']}, {r.flow} flow\n{r.dim} dims, count = {row['count']}", fontsize=9)
        ax.set_xlabel("index of singular value (descending)")
        ax.set_ylabel("singular value / largest")
        ax.legend(fontsize=7, loc="center right")
    return fig
