"""Sweeps: a ``[sweep]`` table turns one study into a grid of studies, one per sweep point.

In the study TOML each key of ``[sweep]`` is a dotted configuration key and its value the list of values
it takes; the grid is the Cartesian product of the keys, in the order they are written. A
``[[sweep.zip]]`` group lists keys that vary together (lists of equal length): the group is one axis of
the grid::

    [sweep]
    "init.scale" = [0.25, 0.5, 1, 2]
    "model.widths" = [[10, 16, 5], [10, 64, 64, 5]]
    [[sweep.zip]]
    "weight_decay" = [0, 1e-3]
    "methods.gd.step_sizes" = [[0.01, 0.005, 0.0025], [0.004, 0.002, 0.001]]

Every point is the base study with its keys set (as ``--set`` would set them) and is validated by
``config.parse_config`` before any work; an invalid point raises a ``ConfigError`` naming the point,
the swept keys and values that make it, and the error.

In the results every axis is one dimension named exactly as its key (a zip group: its first key; the
other keys of the group are coordinates along it). Numbers and strings are their own coordinate
values; lists are labelled by their items joined with "-" (``"10-16-5"``).
"""

from __future__ import annotations

import copy
import itertools
import numbers
from dataclasses import dataclass
from pathlib import Path

from ._validate import ConfigError
from .config import apply_overrides, parse_config, parse_override, read_toml

SWEEP, ZIP = "sweep", "zip"


@dataclass
class Axis:
    """One axis of the grid: ``keys`` (one, or a zip group) and their values, ``len(values[key])`` long."""

    keys: list[str]
    values: dict  # key -> list of values

    @property
    def name(self) -> str:
        return self.keys[0]

    def __len__(self):
        return len(self.values[self.keys[0]])


@dataclass
class Plan:
    """A study ready to run: its configuration, and (for a sweep) every point's validated configuration.

    ``config`` is the plain study's parsed configuration, or for a sweep the base configuration as given
    with its ``sweep`` table (the study's identity); ``points`` is None for a plain study, else one parsed
    configuration per point; ``index[i]`` is point i's position on each axis.
    """

    config: dict
    axes: list[Axis]
    points: list[dict] | None
    index: list[tuple]

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def shape(self) -> tuple:
        return tuple(len(a) for a in self.axes)

    def layout(self) -> dict | None:
        """What the store records about the grid (JSON), so ``load`` can lay out the dimensions."""
        if self.points is None:
            return None
        return {"dims": [{"name": a.name, "keys": a.keys, "values": a.values} for a in self.axes],
                "index": [list(ix) for ix in self.index]}

    def settings(self, i: int) -> dict:
        """{key: value} that make point i."""
        return {key: axis.values[key][j] for axis, j in zip(self.axes, self.index[i]) for key in axis.keys}

    def describe(self, i: int) -> str:
        return ", ".join(f"{k}={value_label(v)}" for k, v in self.settings(i).items())


def value_label(value) -> str:
    """A readable label: lists joined with "-", numbers in %g, strings as they are."""
    if isinstance(value, list):
        return "-".join(value_label(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Real):
        return f"{value:g}"
    return str(value)


def coordinate(values: list) -> list:
    """The values as a dimension's coordinate: themselves if all scalars, else their labels."""
    if all(isinstance(v, bool) for v in values) or all(isinstance(v, str) for v in values):
        return list(values)
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return [float(v) if any(isinstance(x, float) for x in values) else int(v) for v in values]
    return [value_label(v) for v in values]


def _axes(table) -> list[Axis]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"sweep={table!r} is invalid: must be a table of dotted keys, each a list of values, "
                          f'e.g. [sweep] "init.scale" = [0.5, 1, 2]')
    axes, seen = [], set()

    def check_key(key, values, where):
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"{where}{key!r} is invalid: a sweep key is a dotted configuration key, "
                              f"e.g. \"init.scale\"")
        if key.split(".")[0] == SWEEP:
            raise ConfigError(f"{where}{key!r} is invalid: the sweep cannot sweep itself")
        if key in seen:
            raise ConfigError(f"{where}{key!r} is invalid: the key is swept twice (each key may appear once)")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}{key}={values!r} is invalid: must be a non-empty list of the values it takes")
        if any(a == b for a, b in itertools.combinations(values, 2)):
            raise ConfigError(f"{where}{key}={values!r} is invalid: the values must be distinct")
        seen.add(key)

    for key, values in table.items():
        if key == ZIP:
            groups = values if isinstance(values, list) else [values]
            for g, group in enumerate(groups):
                where = f"sweep.zip[{g}]: "
                if not isinstance(group, dict) or not group:
                    raise ConfigError(f"{where}{group!r} is invalid: each [[sweep.zip]] group is a table of at "
                                      f"least one dotted key, each a list of values")
                for k, v in group.items():
                    check_key(k, v, where)
                lengths = {k: len(v) for k, v in group.items()}
                if len(set(lengths.values())) != 1:
                    raise ConfigError(f"{where}{lengths} is invalid: the keys of a zip group vary together, "
                                      f"so their lists must have the same length")
                axes.append(Axis(list(group), {k: list(v) for k, v in group.items()}))
        else:
            check_key(key, values, "sweep: ")
            axes.append(Axis([key], {key: list(values)}))
    return axes


def _set_dotted(raw: dict, key: str, value) -> dict:
    table = raw
    parts = key.split(".")
    for i, p in enumerate(parts[:-1]):
        nxt = table.get(p)
        if nxt is None:
            nxt = table[p] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"sweep key {key!r} is invalid: {'.'.join(parts[:i + 1])!r} is a value, not a table")
        table = nxt
    table[parts[-1]] = copy.deepcopy(value)
    return raw


def _check_overrides(axes: list[Axis], overrides):
    """Refuse ``--set`` of a key the sweep varies (or a table holding one, or a key inside one): each
    point sets its swept keys after the overrides, so the override would be silently ignored."""
    for text in overrides or ():
        key = ".".join(parse_override(text)[0])
        if key.split(".")[0] == SWEEP:
            continue  # an override of the sweep itself
        for axis in axes:
            for swept in axis.keys:
                if key == swept or swept.startswith(key + ".") or key.startswith(swept + "."):
                    raise ConfigError(
                        f"--set {text!r} is invalid: the study's [sweep] varies {swept!r} (values "
                        f"{axis.values[swept]!r}), so every point sets it and the override would be ignored. "
                        f"Change its values in the study file's [sweep] table instead")


def plan(config, overrides=()) -> Plan:
    """A study (a TOML path, a raw config dict as tomllib gives it, or None for the built-in default),
    with ``--set`` overrides, as a validated Plan: a plain study, or every point of its sweep."""
    from .config import DEFAULT_STUDY

    if config is None:
        raw = copy.deepcopy(DEFAULT_STUDY)
    elif isinstance(config, (str, Path)):
        raw = read_toml(config)
        raw.setdefault("name", Path(config).stem)
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
    else:
        raise ConfigError(f"config={config!r} is invalid: must be a TOML path, a config dict or None")
    raw = apply_overrides(raw, overrides)
    table = raw.pop(SWEEP, None)
    if table is None:
        return Plan(parse_config(raw), [], None, [()])
    axes = _axes(table)
    _check_overrides(axes, overrides)
    raw.setdefault("name", "study")
    index = list(itertools.product(*(range(len(a)) for a in axes)))
    points = []
    for i, ix in enumerate(index):
        point = copy.deepcopy(raw)
        settings = {key: axis.values[key][j] for axis, j in zip(axes, ix) for key in axis.keys}
        for key, value in settings.items():
            _set_dotted(point, key, value)
        try:
            points.append(parse_config(point))
        except ConfigError as err:
            what = ", ".join(f"{k}={v!r}" for k, v in settings.items())
            raise ConfigError(f"sweep point {i} ({what}) is invalid: {err}") from None
    study = {**raw, SWEEP: table}
    return Plan(study, axes, points, index)
