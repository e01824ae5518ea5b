"""The model's hand-written charge catalogue checked against the laws found: which catalogued charges are
conserved, which found laws the catalogue misses, and readable descriptions of a law's terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lie import _orth, _sample_theta, decide_rank
from .laws import _sample_rows, antisym_coords, linear_products, sym_coords, sym_matrix


CONSERVED_TOL = 1e-9  # |⟨∇q, ∇ℓ⟩| / (|∇q||∇ℓ|) below which a catalogue charge counts as conserved


@dataclass(frozen=True)
class CatalogueCheck:
    """The model's hand-written charges against what was found.

    Attributes
    ----------
    groups : list of dict
        Per charge group: name, degree, description, components, conserved (measured), residual.
    independent : int
        Rank of the conserved catalogue charges' gradients at a generic point (functionally independent
        laws the catalogue provides).
    complete : bool
        The catalogue accounts for every law: independent == count and no found linear or quadratic law
        lies outside its span.
    missing : list of str
        Readable descriptions of found low-degree laws outside the catalogue's span.
    """

    groups: list
    independent: int
    complete: bool
    missing_linear: list
    missing_quadratic: list
    missing: list
    notes: list


def _param_names(model):
    if hasattr(model, "param_names"):  # a model that names its own parameters (self-attention)
        return model.param_names()
    if getattr(model, "kind", "") == "lora":  # factor layers A_l, B_l
        names = []
        for j, l in enumerate(model.layers):
            for k, letter in ((2 * j + 1, "A"), (2 * j + 2, "B")):
                n_out, n_in = model.weight_shape(k)
                names += [f"{letter}{l}[{a},{b}]" for a in range(n_out) for b in range(n_in)]
        return names
    names = []
    for i in range(1, model.n_layers + 1):
        n_out, n_in = model.weight_shape(i)
        names += [f"W{i}[{a},{b}]" for a in range(n_out) for b in range(n_in)]
        if model.bias:
            names += [f"b{i}[{a}]" for a in range(n_out)]
    return names


def _block_of(name):
    return name.split("[")[0]


def describe_linear(model, v, terms=6):
    names = _param_names(model)
    order = np.argsort(-np.abs(v))
    blocks = sorted({_block_of(names[k]) for k in np.nonzero(np.abs(v) > 1e-8 * np.abs(v).max())[0]})
    shown = " ".join(f"{v[k]:+.3f}·{names[k]}" for k in order[:terms] if abs(v[k]) > 1e-8)
    more = " …" if np.count_nonzero(np.abs(v) > 1e-8 * np.abs(v).max()) > terms else ""
    return f"linear in {', '.join(blocks)}: {shown}{more}"


def describe_quadratic(model, S, terms=6, left="", right=""):
    """Which blocks of θ the form couples (and the share of |S|² on each pair), and its largest terms."""
    names = _param_names(model)
    blocks = [_block_of(n) for n in names]
    uniq = list(dict.fromkeys(blocks))
    ids = np.array([uniq.index(b) for b in blocks])
    total = float((S * S).sum())
    share = {}
    for a in range(len(uniq)):
        for b in range(len(uniq)):
            w = float((S[np.ix_(ids == a, ids == b)] ** 2).sum())
            if w > 1e-12 * total:
                key = tuple(sorted((uniq[a], uniq[b]))) if not left else (uniq[a], uniq[b])
                share[key] = share.get(key, 0.0) + w / total
    pairs = ", ".join(f"{left}{a}×{right}{b} ({100 * w:.0f}%)" for (a, b), w in sorted(share.items(), key=lambda kv: -kv[1]))
    M = S if left else np.triu(S)
    flat = np.argsort(-np.abs(M), axis=None)[:terms]
    shown = []
    for k in flat:
        a, b = np.unravel_index(k, S.shape)
        if abs(M[a, b]) < 1e-8 * np.abs(S).max():
            continue
        coef = M[a, b] if left else (M[a, b] * (0.5 if a == b else 1.0))
        shown.append(f"{coef:+.3f}·{left}{names[a]}·{right}{names[b]}")
    return f"couples {pairs}: {' '.join(shown)} …"


def catalogue_forms(model):
    """The catalogue's gradient-flow charges as (group, component, 'linear', v) or (…, 'quadratic', S),
    S the Hessian of the charge (q = ½θᵀSθ), read off the package's charge kernel by polarisation."""
    from ..kernels.entries import ensemble_charges

    P, groups = model.n_params, model.charge_groups
    nq = sum(g.size for g in groups)
    if nq == 0:
        return []
    ints = model.descriptor()
    floats = model.constants(None) if getattr(model, "kind", "") in ("mlp", "lora", "residual_mlp") else np.zeros(1)

    def charges(probes):
        return ensemble_charges(int(ints[0]), np.ascontiguousarray(probes), ints, floats, nq)

    comps = []
    for g in groups:
        ks = range(g.offset, g.offset + g.size)
        if len(g.shape) == 2:  # a symmetric matrix charge: its upper triangle
            n = g.shape[0]
            ks = [g.offset + a * n + b for a in range(n) for b in range(a, n)]
        comps += [(g, k) for k in ks]
    cols = np.array([k for _, k in comps])
    diag = charges(np.eye(P))[:, cols]  # q(e_a): v_a, or ½S_aa
    quad = np.array([g.degree == 2 for g, _ in comps])
    mats = np.zeros((int(quad.sum()), P, P))
    qcols = cols[quad]
    for a in range(P):  # S_ab = q(e_a + e_b) − q(e_a) − q(e_b), one row a at a time (memory O(P²) per charge)
        if not quad.any():
            break
        probes = np.eye(P)
        probes[:, a] += 1.0
        qa = charges(probes)[:, qcols]
        mats[:, a, :] = (qa - diag[a, quad][None, :] - diag[:, quad]).T
        mats[:, a, a] = 2.0 * diag[a, quad]
    out, j = [], 0
    for (g, k), is_quad, i in zip(comps, quad, range(len(comps))):
        if is_quad:
            out.append((g, k - g.offset, "quadratic", mats[j]))
            j += 1
        else:
            out.append((g, k - g.offset, "linear", diag[:, i].copy()))
    return out


def _isometric_kernel(model):
    """The model family's isometric-charge kernel as J(θ, p, out)."""
    ints = model.descriptor()
    if getattr(model, "kind", "") == "lora":
        from ..kernels.lora import lora_isometric_charges

        floats = model.constants(None)
        return lambda theta, mom, out: lora_isometric_charges(theta, mom, out, ints, floats)
    if getattr(model, "kind", "") == "residual_mlp":
        from ..kernels.residual import residual_isometric_charges

        floats = model.constants(None)
        return lambda theta, mom, out: residual_isometric_charges(theta, mom, out, ints, floats)
    if getattr(model, "kind", "") == "attention":
        from ..kernels.attention import attention_isometric_charges

        return lambda theta, mom, out: attention_isometric_charges(theta, mom, out, ints)
    if getattr(model, "kind", "") == "mlp":
        from ..kernels.mlp import mlp_isometric_charges

        floats = model.constants(None)
        return lambda theta, mom, out: mlp_isometric_charges(theta, mom, out, ints, floats)
    from ..kernels.linear_isometric import linear_isometric_charges

    return lambda theta, mom, out: linear_isometric_charges(theta, mom, out, ints)


def catalogue_momentum_forms(model):
    """The catalogue's momentum (isometric) charges: J = pᵀKq as (group, component, 'bilinear', K) and
    J = ⟨v, p⟩ (translations) as (group, component, 'linear', v), read off the package's kernel."""
    groups = model.isometric_groups()
    if not groups:
        return []
    kernel = _isometric_kernel(model)
    P = model.n_params
    nj = sum(g.size for g in groups)
    used = []
    for g in groups:
        if g.degree == 1:
            used += [(g, k) for k in range(g.size)]
        else:  # an antisymmetric matrix charge: its strict upper triangle
            used += [(g, a * g.shape[0] + b) for a in range(g.shape[0]) for b in range(a + 1, g.shape[0])]
    cols = np.array([g.offset - model.n_charges + k for g, k in used], dtype=np.int64)  # within the J block
    lin = np.array([g.degree == 1 for g, _ in used])
    Ks = np.zeros((len(used), P, P))
    V = np.zeros((len(used), P))
    out = np.zeros(nj)
    theta, mom = np.zeros(P), np.zeros(P)
    for b in range(P):  # J(0, e_b) = v_b: the part linear in p alone
        mom[:] = 0.0
        mom[b] = 1.0
        kernel(theta, mom, out)
        V[:, b] = out[cols]
    for a in range(P):  # J(e_a, e_b) − J(0, e_b) = K_ba: the part bilinear in (θ, p)
        theta[:] = 0.0
        theta[a] = 1.0
        for b in range(P):
            mom[:] = 0.0
            mom[b] = 1.0
            kernel(theta, mom, out)
            Ks[:, b, a] = out[cols] - V[:, b]
    return [(g, k, "linear", V[i]) if lin[i] else (g, k, "bilinear", Ks[i]) for i, (g, k) in enumerate(used)]


def _missing(found, catalogue_vectors, min_gap):
    """Orthonormal columns spanning the part of span(found) outside span(catalogue)."""
    if found.shape[1] == 0:
        return found
    C = _orth(catalogue_vectors, min_gap) if catalogue_vectors.shape[1] else catalogue_vectors
    R = found - C @ (C.T @ found) if C.shape[1] else found
    u, s, _ = np.linalg.svd(R, full_matrices=False)
    keep = s > 1e-6  # found is orthonormal: a component of size > 1e-6 outside the catalogue is real
    return u[:, keep]


def user_forms(model, momentum):
    """A built-in model's user charges (``model.with_charges``) as forms beside the catalogue's: (group, 0,
    'quadratic', S) or (group, 0, 'linear', v), S and v read off the ``Charge`` itself (not the kernel);
    then the function charges, and notes on what a momentum flow does not check. The forms are not
    weighted by layer-wise rates: each is checked as the quantity the user wrote."""
    charges = getattr(model, "user_charges", ()) or ()
    P = model.n_params
    by_name = {g.name: g for g in model.charge_groups}
    forms, functions, notes = [], [], []
    for c in charges:
        grp = by_name[c.name]
        if c.degree == 1:
            v = np.zeros(P)
            np.add.at(v, c.rows, c.values)
            forms.append((grp, 0, "linear", v))
        elif momentum:
            notes.append(f"your charge {c.name} is not checked under flow='momentum' (momentum flows conserve "
                         "isometric charges ⟨p, Kθ⟩ and linear ones, not a quadratic or function q(θ)); use "
                         "flow='gradient'")
        elif c.degree == 2:
            S = np.zeros((P, P))
            np.add.at(S, (c.rows, c.cols), c.values)
            forms.append((grp, 0, "quadratic", S))
        else:
            functions.append((grp, c))
    return forms, functions, notes


def _check_function_charges(functions, theta, g, rng):
    """Per function charge, the catalogue's entry: conserved iff ⟨∇q_i, g⟩ is within the central
    differences' tolerance at every sampled (θ, g) (charges._function_symmetry); the residual is the
    largest |⟨∇q_i, g⟩| / (‖∇q_i‖‖g‖)."""
    from ..charges import _function_symmetry

    out = []
    for grp, c in functions:
        worst, holds = 0.0, True
        for th, gg in zip(theta, g):
            value, size, tol = _function_symmetry(c, th, gg, rng)
            holds &= value <= tol
            worst = max(worst, value / size if size > 0 else 0.0)
        out.append({"name": grp.name, "degree": "function", "description": grp.description, "components": grp.size,
                    "residual": worst, "conserved": bool(holds), "user": True})
    return out


def _check_catalogue(model, fields, lin, quad, count, rng, min_gap):
    P = model.n_params
    momentum = fields.flow == "momentum"
    charged = model if getattr(model, "user_charges", None) else None  # model.with_charges(...)
    if charged is not None:
        model = charged.base
    forms = catalogue_forms(model)
    m = getattr(fields, "scale", None)
    if m is not None:  # layer-wise rates: the weighted charges, v/m (linear) and ½θᵀM^{-1/2}SM^{-1/2}θ
        r = 1.0 / np.sqrt(m)
        forms = [(g, c, kind, M / m if kind == "linear" else M * r[:, None] * r[None, :]) for g, c, kind, M in forms]
    if momentum:  # what momentum runs record as conserved: the isometric charges e^{t/τ}⟨p, Kq⟩
        forms = catalogue_momentum_forms(model)
    functions, notes = [], []
    user_names = set()
    if charged is not None:  # the user's charges, checked the same way (flagged "user" in the groups)
        extra, functions, notes = user_forms(charged, momentum)
        forms = forms + extra
        user_names = {c.name for c in charged.user_charges}
    theta, g = _sample_rows(model, fields, rng, 24)
    groups, grads = {}, []
    th0 = _sample_theta(model, rng, 1)[0]
    p0 = rng.standard_normal(P)
    for grp, comp, kind, M in forms:
        if kind == "linear":
            d = np.broadcast_to(M, theta.shape)
            gz = np.concatenate([np.zeros(P), M, [M @ p0 / fields.tau]]) if momentum else M
        elif kind == "quadratic":
            d = theta @ M.T
            gz = M @ th0
        else:  # ⟨p, Kq⟩ is conserved (times e^{t/τ}) iff Kq is a symmetry generator
            d = theta @ M.T
            gz = np.concatenate([M.T @ p0, M @ th0, [p0 @ M @ th0 / fields.tau]])
        res = float(np.max(np.abs(np.sum(d * g, axis=1)) /
                           np.maximum(np.linalg.norm(d, axis=1) * np.linalg.norm(g, axis=1), 1e-300)))
        entry = groups.setdefault(grp.name, {"name": grp.name, "degree": kind, "description": grp.description,
                                             "components": 0, "residual": 0.0, "forms": [],
                                             **({"user": True} if grp.name in user_names else {})})
        entry["components"] += 1
        entry["residual"] = max(entry["residual"], res)
        entry["forms"].append((M, gz))
        if kind == "linear" and momentum:  # a translation keeps ⟨v, q + τp⟩ as well as e^{t/τ}⟨v, p⟩
            entry.setdefault("second", []).append(np.concatenate([M, fields.tau * M, [0.0]]))
    for entry in groups.values():
        entry["conserved"] = entry["residual"] <= CONSERVED_TOL
        if entry.get("user"):
            if not entry["conserved"]:
                notes.append(f"your charge {entry['name']} is not conserved by this flow (residual "
                             f"{entry['residual']:.1e})")
            continue
        if entry["conserved"]:
            grads += [gz for _, gz in entry["forms"]] + entry.get("second", [])
        else:
            notes.append(f"{entry['name']} is not conserved by this flow (residual {entry['residual']:.1e}): "
                         f"not counted")
    independent = decide_rank(np.array(grads), min_gap).rank if grads else 0
    kept = [e for e in groups.values() if e["conserved"] and not e.get("user")]  # the catalogue's own share
    cat_lin = np.array([M for e in kept if e["degree"] == "linear" for M, _ in e["forms"]]).reshape(-1, P).T
    anti = momentum
    coords = antisym_coords if anti else sym_coords
    cat_quad = [coords(M) for e in kept if e["degree"] in ("quadratic", "bilinear") for M, _ in e["forms"]]
    # products of linear laws are quadratic (bilinear) laws too, functionally dependent ones: a found
    # linear law missing from the catalogue is reported once, as linear
    products = linear_products(np.vstack([cat_lin.T, np.array(lin.basis).reshape(-1, P)]), anti)
    cat_quad += list(products.T)
    found_lin = np.array(lin.basis).reshape(-1, P).T
    miss_lin = _missing(found_lin, cat_lin, min_gap)
    n_coords = P * (P - 1) // 2 if anti else P * (P + 1) // 2
    found_quad = np.array([coords(S) for S in quad.basis]).reshape(-1, n_coords).T
    miss_quad = _missing(found_quad, np.array(cat_quad).reshape(-1, n_coords).T, min_gap)
    missing_lin = [miss_lin[:, k] for k in range(miss_lin.shape[1])]
    missing_quad = [sym_matrix(miss_quad[:, k], P, anti) for k in range(miss_quad.shape[1])]
    text = [describe_linear(model, v) for v in missing_lin]
    text += [describe_quadratic(model, S, left="p·" if anti else "", right="q·" if anti else "")
             for S in missing_quad]
    if count is not None and independent > count:
        notes.append(f"the conserved catalogue charges give {independent} independent laws but only {count} "
                     f"were counted: the data are not generic enough, or a rank decision is wrong")
    if count is not None and independent < count and not text:
        notes.append(f"{count - independent} law(s) are neither in the catalogue nor of the searched linear/"
                     f"{quad.structure} quadratic forms")
    complete = count is not None and independent == count and not text
    public = [{k: v for k, v in e.items() if k not in ("forms", "second")} for e in groups.values()]
    for entry in _check_function_charges(functions, theta, g, rng):
        public.append(entry)
        if not entry["conserved"]:
            notes.append(f"your charge {entry['name']} is not conserved by this flow (largest ⟨∇q, ∇ℓ⟩ / "
                         f"(‖∇q‖‖∇ℓ‖) = {entry['residual']:.1e}, by central differences)")
    return CatalogueCheck(public, independent, complete, missing_lin, missing_quad, text, notes)
