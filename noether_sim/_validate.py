"""Input checks: every error names the parameter, the value given and what is allowed."""

from __future__ import annotations

import numbers

import numpy as np


class ConfigError(ValueError):
    """An invalid argument or configuration value.

    Raised before any work starts; its message names the parameter, the value given and what is allowed.
    A subclass of ``ValueError``.

    Examples
    --------
    >>> import noether_sim as ns
    >>> try:
    ...     ns.data.synthetic_regression(3, 2, 0)
    ... except ns.ConfigError as e:
    ...     print(e)
    n_points=0 is invalid: must be an integer >= 1
    """


def fail(name: str, value, allowed: str):
    if isinstance(value, np.ndarray):
        shown = f"array of shape {value.shape}"
    elif isinstance(value, (list, tuple)) and len(value) > 6:
        shown = f"[{', '.join(f'{x:g}' if isinstance(x, float) else repr(x) for x in value[:3])}, … ({len(value)} values)]"
    else:
        shown = value
    raise ConfigError(f"{name}={shown!r} is invalid: {allowed}")


def positive(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        fail(name, value, "must be a finite number > 0")
    return float(value)


def non_negative(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
        fail(name, value, "must be a finite number >= 0")
    return float(value)


def positive_int(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        fail(name, value, f"must be an integer >= {minimum}")
    return int(value)


def finite_array(name: str, value, ndim: int) -> np.ndarray:
    """A float64 copy of ``value`` (never a view: the caller may change its array later)."""
    if np.iscomplexobj(value):
        fail(name, np.asarray(value), "must be real (complex values given: the imaginary part would be lost)")
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        fail(name, value, f"must be a {ndim}-D array of real numbers")
    if arr.ndim != ndim:
        fail(name, arr, f"must be {ndim}-D, got {arr.ndim}-D")
    if not np.all(np.isfinite(arr)):
        fail(name, arr, "must contain only finite numbers (found NaN or inf)")
    return np.ascontiguousarray(arr)
