"""Your own model and your own charges: any differentiable model, through the same engine.

``CustomModel(n_params, loss_grad, ...)`` runs a user's ``loss_grad(theta, X, Y, grad_out) -> loss``,
compiled with ``numba.njit``, through ``simulate``/``run_ladder`` like the built-in models: the kernels
call it through the address of a small C wrapper (kernels/custom.py), so the engine's compiled driver
is shared by every user function and never recompiled for a new one.

``Charge.quadratic(S, name)`` (q = ½θᵀSθ) and ``Charge.linear(v, name)`` (q = ⟨v, θ⟩) are the user's
charges. The kernels evaluate them like the catalogue's, so gradient descent's exact law
q(θ − ηg) = q(θ) − ηθᵀSg + η²·½gᵀSg (with weight decay's (1 − ηλ)² factor) and heavy ball's and
Nesterov's discrete laws apply to them unchanged: the law predicts the η² term, and its residual is
the accumulated −ηθᵀSg, zero exactly when the symmetry θᵀS∇L ≡ 0 holds. ``check_symmetries`` measures
that symmetry at random θ, per data point.
"""

from __future__ import annotations

import numbers
import time

import numpy as np

from ._validate import ConfigError, fail, positive_int
from .charges import (MAX_CHECKED_COORDINATES, Charge, ChargeGroup, _first_line, _is_njit, _is_typing_error,  # noqa: F401
                      symmetry_report, user_groups)

# The gradient check: central differences with a step of ε^(1/3)·max(1, |θ_i|) have truncation error
# ~h²|∂³L| and round-off ~ε|L|/h, both ~1e-11 relative for smooth losses of size 1; a gradient entry
# is refused when it differs from its difference quotient by more than GRAD_RTOL of the gradient's size.
GRAD_RTOL = 1e-5


class CustomModel:
    """A user's model: ``loss_grad(theta, X, Y, grad_out) -> loss``, compiled with ``numba.njit``.

    The contract: ``theta`` (P,) and ``grad_out`` (P,) are float64 vectors, ``X`` (n_in × N) and ``Y``
    (n_out × N) the training data, one column per point (or the two 2-D arrays ``prepare(X, Y)``
    returns); the function writes ∇L(θ) into every entry of ``grad_out`` and returns L(θ). Before the
    first run (``check``, called by ``simulate``) the package checks it: compiled, the right signature,
    finite values, and the gradient against central finite differences at random points.

    Parameters
    ----------
    n_params : int
        P, the number of parameters.
    loss_grad : numba.njit function
        ``loss_grad(theta, X, Y, grad_out) -> float``.
    charges : list of Charge, optional
        The user's charges (``Charge.quadratic``, ``Charge.linear``); recorded, judged and laid out in the
        results like the built-in models' charges.
    init_scale : float, optional
        The default initialisation: every parameter N(0, init_scale²) (``init.Gaussian(scale)`` gives the
        same); ``simulate(init=init.Given(...))`` gives your own.
    name : str, optional
        The model's name in results and messages.
    prepare : callable, optional
        ``prepare(X, Y) -> (A, B)``: data the function reads instead of (X, Y), computed once (e.g. second
        moments, so a step's cost does not grow with N). Runs with ``prepare`` take no minibatches, and the
        symmetry check is then made on the whole data set only.
    plain_python : bool, optional
        ``loss_grad`` is a plain Python function (NumPy, JAX, PyTorch via NumPy arrays): the kernels call
        back into the interpreter for every gradient (numba object mode), which is much slower and runs
        one seed at a time (bench/README.md measures it); every check, dynamics and law is the same.
    vectorised : bool, optional
        ``loss_grad`` is a plain Python (NumPy, JAX) function vectorised over seeds: ``loss_grad(Theta, X, Y)
        -> (losses, gradients)`` with Theta of shape (S, P), losses (S,) and gradients (S, P). Checked like
        the others, and that a call on several rows gives each row's single-row result (to 1e-12). Gradient
        flow by an explicit tableau at a fixed step, gradient descent, heavy ball and Nesterov (deterministic,
        without the energy record) step the seeds in lockstep: ONE call per stage for all seeds of a round
        (noether_sim/custom_lockstep.py); every other run calls it one row (S = 1) at a time through the
        ``plain_python`` route. Same front door and results either way (docs/guide/custom_models.md
        measures both).
    loss_grad_lanes : numba.njit function, optional
        The same gradient for ``LANES`` = 8 seeds at once (the lane contract): ``loss_grad_lanes(theta, X, Y,
        grad_out)`` with ``theta`` and ``grad_out`` C-contiguous float64 arrays of shape (P, 8), column l one
        seed's θ and its ∇L (the package's seed-interleaved layout, θ[p, l]); it writes every entry of
        ``grad_out`` (the loss is not asked for: a step does not need it; its return value is ignored). Gradient
        flow by an explicit tableau at a fixed step and gradient descent (deterministic, no energy record) then
        step 8 seeds per call (kernels/custom_fast.py), as the built-in deep linear kernel does; the records,
        and every other run, use ``loss_grad``. ``check`` compares it with ``loss_grad`` column by column
        (LANES_RTOL). See docs/guide/custom_models.md, "The lane contract".

    Examples
    --------
    Linear regression f(x) = wᵀx with a squared loss, written as a user would:

    >>> import numba, numpy as np
    >>> import noether_sim as ns
    >>> @numba.njit
    ... def loss_grad(theta, X, Y, grad):
    ...     r = theta @ X - Y[0]
    ...     grad[:] = X @ r / X.shape[1]
    ...     return 0.5 * (r @ r) / X.shape[1]
    >>> model = ns.CustomModel(3, loss_grad, name="linreg")
    >>> ds = ns.simulate(model, ns.data.synthetic_regression(3, 1, 20), dynamics="gd", h=0.1, n_steps=10, seeds=2)
    >>> ds.loss.shape
    (2, 11)

    The same gradient for 8 seeds per call (the lane contract), for the fixed-step runs:

    >>> @numba.njit
    ... def loss_grad_lanes(theta, X, Y, grad):     # theta, grad: (3, 8), column l = seed l
    ...     R = theta.T @ X - Y[0]                     # (8, N): every seed's residuals
    ...     grad[:, :] = X @ R.T / X.shape[1]
    >>> fast = ns.CustomModel(3, loss_grad, loss_grad_lanes=loss_grad_lanes, name="linreg")
    >>> data = ns.data.synthetic_regression(3, 1, 20)
    >>> a = ns.simulate(fast, data, dynamics="gd", h=0.1, n_steps=10, seeds=11)
    >>> b = ns.simulate(model, data, dynamics="gd", h=0.1, n_steps=10, seeds=11)
    >>> bool(abs(a.theta_final - b.theta_final).max() < 1e-13)
    True
    """

    kind = "custom"
    bias = False
    n_layers = 1
    input_degree = None

    def __init__(self, n_params, loss_grad, *, charges=(), init_scale=1.0, name="custom", prepare=None,
                 plain_python=False, vectorised=False, loss_grad_lanes=None):
        self.n_params = positive_int("n_params", n_params)
        if loss_grad_lanes is not None:
            if plain_python or vectorised:
                fail("loss_grad_lanes", getattr(loss_grad_lanes, "__name__", loss_grad_lanes),
                     "needs a numba.njit loss_grad (not plain_python or vectorised)")
            if not _is_njit(loss_grad_lanes):
                fail("loss_grad_lanes", loss_grad_lanes, "must be a function compiled with numba.njit: "
                                                         "loss_grad_lanes(theta (P, 8), X, Y, grad_out (P, 8))")
        self.loss_grad_lanes = loss_grad_lanes
        self._lanes_wrapper = None
        self.vectorised = bool(vectorised)
        self.batch_function = None
        if self.vectorised:  # (Θ (S, P), X, Y) -> (losses (S,), gradients (S, P)), called a row at a time
            if not callable(loss_grad) or _is_njit(loss_grad):
                fail("loss_grad", loss_grad, "with vectorised=True must be a plain Python (NumPy/JAX) function "
                                             "loss_grad(Theta (S, P), X, Y) -> (losses (S,), gradients (S, P))")
            self.batch_function = loss_grad
            loss_grad = _row_adapter(loss_grad, self.n_params)
            plain_python = True
        self.plain_python = bool(plain_python)
        if self.plain_python:
            if not callable(loss_grad) or _is_njit(loss_grad):
                fail("loss_grad", loss_grad, "with plain_python=True must be a plain Python function "
                                             "loss_grad(theta, X, Y, grad_out) -> loss (a numba.njit one needs no flag)")
        elif not _is_njit(loss_grad):
            fail("loss_grad", loss_grad, "must be a function compiled with numba.njit: "
                                         "loss_grad(theta, X, Y, grad_out) -> loss (or pass plain_python=True for "
                                         "a NumPy/JAX/PyTorch function: slower, see docs/guide/custom_models.md)")
        self.loss_grad = loss_grad
        if not isinstance(name, str) or not name:
            fail("name", name, "must be a non-empty string")
        self.name = name
        if not isinstance(init_scale, numbers.Real) or not np.isfinite(init_scale) or init_scale < 0:
            fail("init_scale", init_scale, "must be a finite number >= 0")
        self.init_scale = float(init_scale)
        if prepare is not None and not callable(prepare):
            fail("prepare", prepare, "must be a function (X, Y) -> (A, B) of two 2-D arrays")
        self.prepare = prepare
        self.charges = self._check_charges(charges)
        self._wrapper = None
        self._checked = {}
        self.compile_seconds = None

    def _check_charges(self, charges):
        if isinstance(charges, Charge):
            charges = [charges]
        charges = list(charges)
        seen = set()
        for i, c in enumerate(charges):
            if not isinstance(c, Charge):
                fail(f"charges[{i}]", c, "must be a noether_sim.Charge (Charge.quadratic, Charge.linear, "
                                         "Charge.function)")
            if c.n != self.n_params:
                fail(f"charges[{i}]", c, f"has size {c.n} but the model has n_params = {self.n_params}: "
                                         f"S must be {self.n_params} × {self.n_params}, v of length {self.n_params}, "
                                         f"a function's n_params {self.n_params}")
            if c.name in seen:
                fail(f"charges[{i}]", c, f"repeats the name {c.name!r}")
            seen.add(c.name)
        return tuple(charges)

    def with_charges(self, *charges):
        """A copy of this model with ``charges`` added to its own.

        Parameters
        ----------
        *charges : Charge
            The charges to add.

        Returns
        -------
        CustomModel

        Examples
        --------
        >>> import numba, numpy as np
        >>> import noether_sim as ns
        >>> @numba.njit
        ... def lg(theta, X, Y, grad):
        ...     grad[:] = theta
        ...     return 0.5 * (theta @ theta)
        >>> m = ns.CustomModel(2, lg).with_charges(ns.Charge.linear([1.0, 0.0], "first"))
        >>> [g.name for g in m.charge_groups]
        ['first']
        """
        out = CustomModel(self.n_params, self.batch_function or self.loss_grad, charges=self.charges + tuple(charges),
                          init_scale=self.init_scale, name=self.name, prepare=self.prepare,
                          plain_python=self.plain_python, vectorised=self.vectorised,
                          loss_grad_lanes=self.loss_grad_lanes)
        out._wrapper, out.compile_seconds = self._wrapper, self.compile_seconds
        out._lanes_wrapper = self._lanes_wrapper
        return out

    # ---- what the engine reads (the built-in models' interface) ----

    @property
    def widths(self):
        """(P,): the layout the initialisations read (one block of P parameters)."""
        return (self.n_params,)

    def weight_shape(self, i):
        return (self.n_params, 1)  # the Gaussian initialisation's fan-in is 1: entries N(0, scale²)

    def unflatten(self, theta):
        theta = np.asarray(theta)
        return [(theta[..., :, None], None)]

    def flatten(self, layers):
        return np.asarray(layers[0][0], dtype=float)[..., 0]

    @property
    def default_init(self):
        from .init import Gaussian

        return Gaussian(scale=self.init_scale)

    @property
    def charge_groups(self) -> list[ChargeGroup]:
        return user_groups(self.charges, 0)

    @property
    def n_charges(self) -> int:
        return sum(c.size for c in self.charges)

    def isometric_groups(self) -> list:
        return []

    def descriptor(self) -> np.ndarray:
        return self._descriptor()[0]

    def constants(self, data=None) -> np.ndarray:
        return self._descriptor()[1]

    def _descriptor(self):
        from .kernels.custom import descriptor, register_lanes

        wrapper = self.wrapper()
        if self.loss_grad_lanes is not None:
            register_lanes(wrapper, self.lanes_wrapper())
        return descriptor(wrapper.address, self.n_params, [c.table_entry() for c in self.charges])

    def kernel_data(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) as C-contiguous float64, or ``prepare(X, Y)``."""
        X, Y = np.asarray(data.X, dtype=float), np.asarray(data.Y, dtype=float)
        if self.prepare is not None:
            out = self.prepare(X, Y)
            if not isinstance(out, tuple) or len(out) != 2:
                fail("prepare", self.prepare, "must return a pair (A, B) of 2-D float arrays")
            X, Y = out
            X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
            if X.ndim != 2 or Y.ndim != 2:
                fail("prepare", self.prepare, f"must return two 2-D arrays, got shapes {X.shape} and {Y.shape}")
        return np.ascontiguousarray(X), np.ascontiguousarray(Y)

    def to_config(self) -> dict:
        return {"kind": self.kind, "name": self.name, "n_params": self.n_params,
                "loss_grad": f"{getattr(self.loss_grad, '__module__', '?')}.{self.loss_grad.__name__}",
                "charges": [c.name for c in self.charges]}

    def __repr__(self):
        return f"CustomModel({self.name!r}, n_params={self.n_params}, charges={[c.name for c in self.charges]})"

    # ---- compiling and checking the user's function ----

    def wrapper(self):
        """The compiled C wrapper of ``loss_grad`` (kernels/custom.py); compiled on first use, said so with
        the time it took, and cached on disk."""
        if self._wrapper is None:
            from .ensemble import compile_notice, log
            from .kernels.custom import python_wrapper, user_wrapper

            t0 = time.perf_counter()
            if self.plain_python:
                self._wrapper = python_wrapper(self.loss_grad)
                self.compile_seconds = time.perf_counter() - t0
                return self._wrapper
            with compile_notice(f"the custom model {self.name!r} (its loss_grad, once per function)"):
                try:
                    try:
                        self._wrapper = user_wrapper(self.loss_grad, cache=True)
                    except ConfigError:
                        raise
                    except Exception as exc:  # a function numba cannot cache (defined interactively, …)
                        if _is_typing_error(exc):
                            raise
                        self._wrapper = user_wrapper(self.loss_grad, cache=False)
                except Exception as exc:
                    if _is_typing_error(exc):
                        fail("loss_grad", self.loss_grad.__name__,
                             "does not compile for the contract loss_grad(theta: float64[:], X: float64[:, :], "
                             "Y: float64[:, :], grad_out: float64[:]) -> float: " + _first_line(exc))
                    raise
            self.compile_seconds = time.perf_counter() - t0
            log.debug(f"custom model {self.name!r}: loss_grad ready in {self.compile_seconds:.2f} s")
        return self._wrapper

    def lanes_wrapper(self):
        """The compiled C wrapper of ``loss_grad_lanes`` (kernels/custom.py ``lanes_wrapper``), made once and
        cached on disk; None without one."""
        if self.loss_grad_lanes is None:
            return None
        if self._lanes_wrapper is None:
            from .ensemble import compile_notice
            from .kernels.custom import lanes_wrapper

            with compile_notice(f"the custom model {self.name!r} (its loss_grad_lanes, once per function)"):
                try:
                    try:
                        self._lanes_wrapper = lanes_wrapper(self.loss_grad_lanes, cache=True)
                    except Exception as exc:
                        if _is_typing_error(exc):
                            raise
                        self._lanes_wrapper = lanes_wrapper(self.loss_grad_lanes, cache=False)
                except Exception as exc:
                    if _is_typing_error(exc):
                        fail("loss_grad_lanes", self.loss_grad_lanes.__name__,
                             "does not compile for the lane contract loss_grad_lanes(theta: float64[:, ::1] (P, 8), "
                             "X: float64[:, :], Y: float64[:, :], grad_out: float64[:, ::1] (P, 8)): "
                             + _first_line(exc))
                    raise
        return self._lanes_wrapper

    def _call_lanes(self, thetas, a, b):
        """∇L of LANES rows θ (LANES, P) by the lane wrapper: (LANES, P), grad_out prefilled with NaN."""
        import ctypes

        from .kernels.lanes_gemm import LANES

        block = np.ascontiguousarray(np.asarray(thetas, dtype=float).T)  # (P, LANES)
        grad = np.full((self.n_params, LANES), np.nan)
        dp = ctypes.POINTER(ctypes.c_double)
        self.lanes_wrapper().ctypes(block.ctypes.data_as(dp), a.ctypes.data_as(dp), b.ctypes.data_as(dp),
                                    grad.ctypes.data_as(dp), self.n_params, a.shape[0], a.shape[1], b.shape[0],
                                    b.shape[1])
        return grad.T.copy()

    def _check_lanes(self, a, b, rng, n_blocks=2):
        """The lane function against ``loss_grad`` at ``n_blocks`` random blocks of LANES seeds: every seed's
        gradient to LANES_RTOL of its size; the error names the worst seed (lane) and coordinate."""
        from .kernels.lanes_gemm import LANES

        name = self.loss_grad_lanes.__name__
        scale = self.init_scale if self.init_scale > 0 else 1.0
        for _ in range(n_blocks):
            thetas = scale * rng.standard_normal((LANES, self.n_params))
            lanes = self._call_lanes(thetas, a, b)
            for l in range(LANES):
                grad = self._call(thetas[l], a, b)[1]
                size = max(float(np.max(np.abs(grad))), 1e-300)
                dev = np.abs(lanes[l] - grad)
                dev[~np.isfinite(lanes[l])] = np.inf
                j = int(np.argmax(dev))
                if not dev[j] <= LANES_RTOL * size:
                    fail("loss_grad_lanes", name,
                         f"disagrees with loss_grad: worst at seed (lane) {l}, coordinate {j}: grad_out[{j}, {l}] = "
                         f"{lanes[l, j]!r}, loss_grad's {grad[j]!r} (|difference| {dev[j]:.3g} > {LANES_RTOL:g} × "
                         f"the gradient's size {size:.3g}); column l of theta and grad_out is seed l "
                         "(shape (P, 8)), and every entry of grad_out must be written")

    def loss_and_grad(self, theta, data):
        """L(θ) and ∇L(θ) for rows θ (n, P) by the kernels (the same compiled path the runs take)."""
        from .kernels.entries import ensemble_loss_grad
        from .kernels.layout import MODEL_CUSTOM

        ints, floats = self._descriptor()
        a, b = self.kernel_data(data)
        theta = np.ascontiguousarray(np.atleast_2d(np.asarray(theta, dtype=float)))
        return ensemble_loss_grad(MODEL_CUSTOM, theta, ints, floats, a, b)

    def check(self, data, *, n_points=3, seed=12345):
        """Check the contract on ``data`` before any run: shapes, finite values, the gradient against
        central differences, and the charges' symmetries. Called by ``simulate``; cached per data set.

        Parameters
        ----------
        data : TrainingData
            The training data of the run.
        n_points : int, optional
            The number of random θ ~ N(0, init_scale²) (at least 1) at which to check.
        seed : int, optional
            Their seed.

        Returns
        -------
        list of dict
            The symmetry report of ``check_symmetries``.

        Raises
        ------
        ConfigError
            ``loss_grad`` does not compile for the contract, returns a non-finite loss, leaves an entry of
            ``grad_out`` unwritten or non-finite, or disagrees with finite differences (naming the worst
            coordinate and both values); a charge claimed conserved whose symmetry fails.

        Examples
        --------
        >>> import numba, numpy as np
        >>> import noether_sim as ns
        >>> @numba.njit
        ... def wrong(theta, X, Y, grad):
        ...     grad[:] = 2.0 * theta           # the gradient of |θ|², not of the ½|θ|² returned
        ...     return 0.5 * (theta @ theta)
        >>> ns.CustomModel(2, wrong).check(ns.data.synthetic_regression(2, 1, 4))   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        noether_sim._validate.ConfigError: loss_grad='wrong' is invalid: its gradient disagrees with ...
        """
        key = id(data)
        if key in self._checked and self._checked[key][0] is data:
            return self._checked[key][1]
        self.wrapper()
        a, b = self.kernel_data(data)
        rng = np.random.default_rng(seed)
        P = self.n_params
        rows = []
        for _ in range(n_points):
            theta = self.init_scale * rng.standard_normal(P) if self.init_scale > 0 else rng.standard_normal(P)
            self._check_at(theta, a, b, rng)
            rows.append(theta)
        if self.vectorised:
            self._check_rows(np.array(rows), a, b)
        if self.loss_grad_lanes is not None:
            self._check_lanes(a, b, rng)
        report = self.check_symmetries(data, n_points=n_points, seed=seed)
        from .ensemble import log

        for r in report:
            log.info(f"custom model {self.name!r}: charge {r['charge']!r}: {r['message']}")
            claimed = next(c for c in self.charges if c.name == r["charge"]).claim
            if claimed == "conserved" and not r["holds"]:
                fail(f"charges[{r['charge']!r}]", "claim='conserved'", f"the symmetry check refutes it: {r['message']}")
        self._checked[key] = (data, report)
        return report

    def _call(self, theta, a, b):
        """(loss, grad) of one row through the compiled wrapper, grad_out prefilled with NaN (unwritten
        entries show)."""
        import ctypes

        grad = np.full(self.n_params, np.nan)
        theta = np.ascontiguousarray(theta, dtype=float)
        if self.plain_python:  # directly: an exception of the user's code surfaces as itself
            try:
                return float(self.loss_grad(theta.copy(), a, b, grad)), grad
            except ConfigError:  # the vectorised adapter's own (shapes)
                raise
            except Exception as exc:
                fail("loss_grad", getattr(self.loss_grad, "__name__", self.loss_grad),
                     f"raised {type(exc).__name__}: {exc} (the contract: loss_grad(theta, X, Y, grad_out) -> loss)")
        dp = ctypes.POINTER(ctypes.c_double)
        loss = self.wrapper().ctypes(theta.ctypes.data_as(dp), a.ctypes.data_as(dp), b.ctypes.data_as(dp),
                                     grad.ctypes.data_as(dp), self.n_params, a.shape[0], a.shape[1], b.shape[0],
                                     b.shape[1])
        return float(loss), grad

    def _check_rows(self, thetas, a, b):
        """A vectorised function: the rows of one call (S = n_points) are the single-row calls' (no mixing of
        seeds), to VECTOR_RTOL."""
        name = getattr(self.batch_function, "__name__", repr(self.batch_function))
        losses, grads = _call_batch(self.batch_function, thetas, a, b, self.n_params)
        for i, theta in enumerate(thetas):
            loss, grad = self._call(theta, a, b)
            size = max(abs(loss), np.max(np.abs(grad)), 1e-300)
            dev = max(abs(losses[i] - loss), np.max(np.abs(grads[i] - grad)))
            if not dev <= VECTOR_RTOL * size:
                fail("loss_grad", name, f"row {i} of a call on {len(thetas)} rows differs from the call on that row "
                                        f"alone by {dev:.3g} (size {size:.3g}): each row's loss and gradient must "
                                        "depend on that row of Theta only")

    def _check_at(self, theta, a, b, rng):
        name = self.loss_grad.__name__
        loss, grad = self._call(theta, a, b)
        if not np.isfinite(loss):
            fail("loss_grad", name, f"returned the loss {loss} at a random θ (it must be finite)")
        bad = np.flatnonzero(~np.isfinite(grad))
        if len(bad):
            fail("loss_grad", name, f"left grad_out[{bad[0]}] = {grad[bad[0]]} ({len(bad)} of {self.n_params} entries "
                                    "unwritten or not finite): it must write every entry of grad_out")
        P = self.n_params
        coords = np.arange(P) if P <= MAX_CHECKED_COORDINATES else np.sort(rng.choice(P, MAX_CHECKED_COORDINATES,
                                                                                       replace=False))
        fd = np.empty(len(coords))
        tol = np.empty(len(coords))
        gsize = np.max(np.abs(grad))
        for n, i in enumerate(coords):
            h = np.cbrt(np.finfo(float).eps) * max(1.0, abs(theta[i]))
            tp, tm = theta.copy(), theta.copy()
            tp[i] += h
            tm[i] -= h
            lp, lm = self._call(tp, a, b)[0], self._call(tm, a, b)[0]
            fd[n] = (lp - lm) / (2 * h)
            tol[n] = GRAD_RTOL * (abs(grad[i]) + gsize) + 1e3 * np.finfo(float).eps * max(abs(lp), abs(lm)) / h
        err = np.abs(fd - grad[coords])
        worst = int(np.argmax(err - tol))
        if err[worst] > tol[worst]:
            i = int(coords[worst])
            fail("loss_grad", name, f"its gradient disagrees with central finite differences: worst coordinate "
                                    f"{i}: grad_out[{i}] = {grad[i]:.10g}, finite difference = {fd[worst]:.10g} "
                                    f"(|difference| {err[worst]:.3g} > tolerance {tol[worst]:.3g})")

    def check_symmetries(self, data, *, n_points=3, seed=12345) -> list[dict]:
        """Does the symmetry behind each charge hold? θᵀS∇L_n(θ) (quadratic), ⟨v, ∇L_n(θ)⟩ (linear) or
        ⟨∇q_i, ∇L_n(θ)⟩ (function charges, by central differences) at random θ and for each data point's
        loss L_n alone (the whole data set's with ``prepare``).

        Parameters
        ----------
        data : TrainingData
            The data.
        n_points : int, optional
            The number of random θ.
        seed : int, optional
            Their seed.

        Returns
        -------
        list of dict
            Per charge: ``charge``, ``max_abs`` (the largest |θᵀS∇L_n|), ``scale`` (the size of its terms),
            ``holds`` (max_abs within SYMMETRY_FACTOR·ε·scale; for a function charge within
            FUNCTION_RTOL·scale plus the differences' round-off) and ``message``.

        Examples
        --------
        >>> import numba, numpy as np
        >>> import noether_sim as ns
        >>> @numba.njit
        ... def lg(theta, X, Y, grad):       # f(x) = θ₁θ₀x: L is invariant under (θ₀, θ₁) → (cθ₀, θ₁/c)
        ...     r = theta[1] * theta[0] * X[0] - Y[0]
        ...     d = np.mean(r * X[0])
        ...     grad[0] = d * theta[1]
        ...     grad[1] = d * theta[0]
        ...     return 0.5 * np.mean(r * r)
        >>> balance = ns.Charge.quadratic(np.diag([1.0, -1.0]), "balance")      # ½(θ₀² − θ₁²)
        >>> norm = ns.Charge.quadratic(np.eye(2), "norm")
        >>> model = ns.CustomModel(2, lg, charges=[balance, norm])
        >>> [(r["charge"], r["holds"]) for r in model.check_symmetries(ns.data.synthetic_regression(1, 1, 5))]
        [('balance', True), ('norm', False)]
        """
        if self.prepare is None:
            X, Y = np.asarray(data.X, dtype=float), np.asarray(data.Y, dtype=float)
            parts = [(np.ascontiguousarray(X[:, n:n + 1]), np.ascontiguousarray(Y[:, n:n + 1]))
                     for n in range(X.shape[1])]
            per = "per data point"
        else:
            parts = [self.kernel_data(data)]
            per = "on the whole data set (prepare: no per-point check)"
        return symmetry_report(self.charges, lambda theta, part: self._call(theta, *part)[1], parts, self.n_params,
                               self.init_scale or 1.0, n_points, seed, per)


# The lane function against loss_grad: the same gradient, possibly summed in another order (a few ulps of
# the largest entry per operation chain); 1e-12 of the gradient's size leaves ~4500 ε of room.
LANES_RTOL = 1e-12
VECTOR_RTOL = 1e-12  # a vectorised function's rows against single-row calls (BLAS may block them differently)


def _call_batch(f, thetas, a, b, P):
    """(losses (S,), gradients (S, P)) of a vectorised user function, as float64 NumPy arrays (JAX and
    PyTorch arrays convert); ConfigError on a wrong shape or an exception of the user's code."""
    name = getattr(f, "__name__", repr(f))
    try:
        losses, grads = f(thetas, a, b)
        losses = np.asarray(losses, dtype=float).reshape(-1)
        grads = np.asarray(grads, dtype=float)
    except Exception as exc:
        fail("loss_grad", name, f"raised {type(exc).__name__}: {exc} (the vectorised contract: "
                                "loss_grad(Theta (S, P), X, Y) -> (losses (S,), gradients (S, P)))")
    S = thetas.shape[0]
    if losses.shape != (S,) or grads.shape != (S, P):
        fail("loss_grad", name, f"returned losses of shape {losses.shape} and gradients of shape {grads.shape} for "
                                f"Theta of shape {thetas.shape}: they must be ({S},) and ({S}, {P})")
    return losses, grads


def _row_adapter(f, P):
    """The per-row contract loss_grad(theta, X, Y, grad_out) -> loss around a vectorised function (one row,
    S = 1, per call): the contract check, and the runs that do not step in lockstep (custom_lockstep.py)."""

    def one_row(theta, X, Y, grad_out):
        losses, grads = _call_batch(f, theta.reshape(1, -1), X, Y, P)
        grad_out[:] = grads[0]
        return losses[0]

    one_row.__name__ = getattr(f, "__name__", "loss_grad")
    one_row.__module__ = getattr(f, "__module__", None)
    return one_row


__all__ = ["Charge", "CustomModel", "ConfigError"]
