"""noether_sim.kernels — the JIT compute core.

Everything in this package is arithmetic on arrays, compiled with numba. Nothing here imports
from the API layer (``noether_sim``), draws random numbers, raises for numerical events or does I/O.

The kernel contract
===================

1. **Ensemble state** is a C-contiguous 2-D float64 array ``theta[n_seeds, n_params]``; one row is
   one network's flat parameter vector. The parameter layout (offsets and shapes of every W_i, b_i)
   is computed once in Python and passed as a small int64 array ``model_ints`` (see ``models.py``
   for its fields); model constants travel in a float64 array ``model_floats``.
2. **A model kernel** ``loss_grad(theta_row, grad_out, model_ints, model_floats, data_a, data_b,
   work) -> loss`` computes the loss and its gradient of one row into a preallocated buffer.
   Deep linear networks read the data only through its second moments (data_a = augmented input
   second moment, data_b = augmented output-input correlation, tr(YY^T)/N in model_floats), so the
   per-step cost does not grow with the number of data points.
   ``charges(theta_row, q_out, ...)`` evaluates every charge of the model as one flat vector q,
   cut into named groups by ``group_off``; each group has a degree (1: linear charge, 2: quadratic
   charge ½θᵀSθ). Evaluating the same function on a gradient vector gives the quadratic form
   q(g) = ½gᵀSg, which is exactly the η² term of the gradient-descent one-step law (theory.md §3).
3. **Methods are data.** A Runge–Kutta method is its tableau (A, b, c, b_err) passed as arrays, a
   splitting its op codes (damp/kick/drift) and weights. One driver (``driver.py``) runs them all; the
   *scheme* (explicit fixed step, explicit adaptive, implicit, splitting, heavy ball / Nesterov, adaptive
   optimizer: op code and β₁, β₂, ε as the method's data, ``optimizers.py``) is a
   compile-time constant like the model kind, and selects one step-attempt body (``explicit.py``
   stage sums, ``implicit.py``, ``splitting.py``, ``fields.py``), so a run compiles only what it uses.
   The vector field (``fields.py``: gradient flow, or momentum flow on y = [q, p, ∫D(p), ∫D(q)]),
   the Runge–Kutta stage loop and the recording are each written once. A model kind with isometric
   symmetries adds ``isometric_charges`` (J(q, p)) to ``models.py``.
4. **The ensemble driver** loops over a range of seeds with the GIL released; the API runs disjoint
   seed ranges on a thread pool (``numba.get_num_threads()`` threads). Every seed owns its time, step
   size, status and counters; nothing is shared between seeds, so seed i's numbers are bit-identical
   whether it runs alone or in a batch, on one thread or several. (Not ``prange``: it doubled the
   driver's compile time for no run-time gain.) Its arguments are named bundles (namedtuples, which
   numba types field by field): ``SeedState``, ``ModelData``, ``Method``, ``Settings``, ``ChargeRefs``,
   ``Records``.
   A fast path (``lanes.py``) runs blocks of 8 seeds interleaved, one seed per vector lane, for the
   runs it knows (deep linear without biases, gradient flow, fixed-step explicit tableaus, and momentum
   splittings without the law integrals; everything
   else, and ``NOETHER_SIM_LANES=0``, goes to the driver). Each lane does the driver's arithmetic in the
   driver's order, so the bit-identity above holds across the two paths too (tests/test_lanes.py).
   Both record a seed with the same code (``record.py``: what is recorded at a save time, the scheme
   constants and a seed's work arrays), one floor below either, so neither imports the other.
5. **Outputs** are written into arrays the caller allocated: ``(n_seeds, n_saves, ...)`` for recorded
   quantities, ``(n_seeds,)`` for status, counters and time of divergence. The driver integrates one
   chunk of save times per call and keeps all its state in caller-owned arrays, so the API can show
   progress and stop between chunks without losing finished work.
6. **Compile time** is part of performance: every kernel uses ``cache=True``; the driver has one
   specialisation per (model kind, scheme) (float64 everywhere, int64 model descriptors, both
   compile-time constants, see ``models.py``); each gradient kernel has one call site per step body,
   because LLVM inlines and optimises a copy per call site. numba's cache does not notice edits to a
   callee in another file, the llvmlite version or the compiler options, nor damaged files: the
   kernels' cache files are keyed by a hash of all of these and checksummed (``_numba_cache.py``), and
   importing noether_sim deletes the files of an outdated key (``noether_sim/_kernel_cache.py``).
7. **Random numbers** for initial weights and velocities come from ``counter_rng.py``: value j of seed i
   is a pure function of (root, stream, i, j), so drawing is vectorised and bit-identical per seed id.
   Per-step randomness of stochastic dynamics (minibatch indices, Langevin noise; ``stochastic.py``) is
   drawn inside the driver from the same generator, keyed by (root, stream, seed id) with the step in
   the counter, so nothing of size steps × params is materialised and seed i stays bit-identical
   however seeds are batched or threaded. A run is stochastic when its ``ModelData.points_x`` is 2-D (the
   data points as rows, for batches); only such a run compiles that code (overloads on the type).

Status codes (``STATUS_*`` below) replace exceptions for numerical events.
"""

STATUS_OK = 0
STATUS_DIVERGED = 1  # parameters became non-finite or exceeded the divergence bound
STATUS_STEP_UNDERFLOW = 2  # adaptive step size fell below the smallest allowed step
STATUS_MAX_STEPS = 3  # adaptive integration exceeded its step budget
STATUS_SOLVE_FAILED = 4  # implicit stage equations did not converge, even on the smallest substep

STATUS_NAMES = {
    STATUS_OK: "ok",
    STATUS_DIVERGED: "diverged",
    STATUS_STEP_UNDERFLOW: "step size underflow",
    STATUS_MAX_STEPS: "step budget exceeded",
    STATUS_SOLVE_FAILED: "implicit solve failed",
}

# fastmath flags for all kernels: FMA contraction and reassociation (so reductions vectorise).
# Deliberately NOT 'nnan'/'ninf': divergence detection needs isfinite to mean what it says.
FASTMATH = {"contract", "reassoc", "nsz"}

from ._numba_cache import install as _install_cache  # noqa: E402

_install_cache()  # before any kernel is defined: numba's cache of the kernels, keyed safely
