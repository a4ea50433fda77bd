"""The proposed plan: one zone per cell, meeting the targets, maximising suitability.

The problem (a semi-assignment / transportation problem with side constraints, as in the Land
Use Scanner or CLUE-S, solved exactly):

    maximise   Σ_i Σ_z a_i (S_iz − C_{c_i z}) x_iz
    subject to Σ_z x_iz = 1                       for every cell i,  x_iz = 0 if z ∉ A_i
               lo_gz D_g ≤ Σ_{i∈g} a_i x_iz ≤ hi_gz D_g   for every target (scope g, zone z)

with ``a_i`` the cell's ground area, ``S_iz`` its suitability for zone ``z`` rounded to the
rules' ``suitability_step``, ``C`` the change cost of the transition matrix (0 to stay),
``A_i`` the zones allowed in the cell (transitions from today's zone ``c_i``, minus the zones
buffers and constraints forbid there) and ``D_g`` the denominator area of the scope (the region
or a unit). The denominator does not change: cells outside it (water; other when it does not
count) keep their zone and cells inside it only take zones inside it.

Exact solution at any size: cells with the same unit, current zone, allowed set and rounded
suitabilities are interchangeable, so they are aggregated into classes (:func:`aggregate`) and
the linear programme on class areas is solved by HiGHS (:func:`solve_classes`). This LP has the
same optimum as the cell-level LP (any cell solution maps to a class solution of equal value and
back). Cells are then given zones deterministically (:func:`disaggregate`): within a class, in
raster order, by cumulative area. Only classes split between zones in the LP solution (at most
one per binding target, at a vertex) can round, each by less than one cell; when rounding
breaks a target, the LP is solved again with that target tightened by (split classes + 1) cells,
so targets hold exactly, at the cost of a few cells' suitability. With equal cell areas the
constraint matrix is a network matrix (source → class → unit-zone → region-zone), so the
vertex the simplex returns is integral and the allocation is an optimum of the integer problem
(checked in the tests against HiGHS's MILP on the cell-level problem).

Large problems (many classes) are solved by sifting on target prices (:func:`solve_classes`):
prices from a coarse LP, refined on the Lagrangian dual, fix the classes whose best zone clearly
wins; the LP over the rest gives exact prices; classes whose fixed zone is no longer their best
are freed until none is — the dual solution then certifies optimality of the whole LP.

When the targets cannot all be met, a first LP minimises the total violation (in share points);
the plan then maximises suitability within that least violation, and every target missed is
reported with the area and share it misses by. Targets are never relaxed silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import sparse

from ecoplan.constraints import (
    apply_constraints,
    forbidden_bits,
    read_constraint_inputs,
)
from ecoplan.errors import EcoplanError
from ecoplan.polygons import vectorize
from ecoplan.suitability import (
    factor_available,
    needed_inputs,
    weights_table,
    zone_suitability,
)
from ecoplan.zones import MAX_CODE, ZONE_BY_CODE, zone_code

__all__ = [
    "N_Z",
    "TargetBound",
    "AllocationProblem",
    "Classes",
    "LPSolution",
    "AllocationResult",
    "aggregate",
    "solve_classes",
    "disaggregate",
    "allocate",
    "realised_areas",
    "objective",
    "Plan",
    "propose_plan",
    "change_cost_matrix",
    "target_bounds",
]

log = logging.getLogger(__name__)

N_Z = MAX_CODE + 1
"""Columns of the per-zone arrays (zone codes 0 … 7; 0 is never allowed)."""

_TOL = 1e-9


@dataclass(frozen=True)
class TargetBound:
    """A target on one zone's area in one scope: ``scope`` 0 = the region, else a unit index."""

    scope: int
    zone: int
    denom_m2: float
    min_share: float | None = None
    max_share: float | None = None
    label: str = ""

    @property
    def min_m2(self) -> float | None:
        return None if self.min_share is None else self.min_share * self.denom_m2

    @property
    def max_m2(self) -> float | None:
        return None if self.max_share is None else self.max_share * self.denom_m2


@dataclass(frozen=True)
class AllocationProblem:
    """Cell-level data, one entry per cell (1-D arrays of length n; per-zone arrays n × 8).

    ``level[i, z] × step`` is the rounded suitability of cell i for zone code z; ``change_cost``
    is 8 × 8 (from, to) in suitability units per unit area.
    """

    unit: np.ndarray  # int32, 1 … n_units
    current: np.ndarray  # uint8 zone codes
    area_m2: np.ndarray  # float64
    allowed: np.ndarray  # bool (n, 8)
    level: np.ndarray  # uint8 (n, 8)
    step: float
    change_cost: np.ndarray  # float64 (8, 8)
    targets: tuple[TargetBound, ...] = ()

    def score(self) -> np.ndarray:
        """Objective per m² of each (cell, zone): suitability − change cost (n × 8)."""
        s = self.level.astype(np.float64) * self.step
        return s - self.change_cost[self.current.astype(np.intp)]


@dataclass(frozen=True)
class Classes:
    """Interchangeable cells: ``inverse[i]`` is the class of cell i (None when the classes
    were gathered block by block, :mod:`ecoplan.cell_classes`)."""

    inverse: np.ndarray | None
    unit: np.ndarray
    current: np.ndarray
    allowed: np.ndarray  # bool (K, 8)
    score: np.ndarray  # float64 (K, 8)
    area_m2: np.ndarray  # float64 (K,)

    def __len__(self) -> int:
        return len(self.area_m2)


@dataclass(frozen=True)
class LPSolution:
    y_m2: np.ndarray  # (K, 8) area of each class given to each zone
    objective: float  # Σ score × area (m²·suitability)
    feasible: bool  # every target met
    shortfall_m2: dict[int, float] = field(default_factory=dict)  # target index -> below min
    excess_m2: dict[int, float] = field(default_factory=dict)  # target index -> above max
    prices: np.ndarray | None = None  # target prices (duals), to warm-start a re-solve


@dataclass(frozen=True)
class AllocationResult:
    zones: np.ndarray | da.Array  # uint8 zone per cell (a raster when allocated by blocks)
    objective: float  # of the cell allocation (m²·suitability; the LP's when by blocks)
    lp_objective: float  # of the LP (an upper bound when feasible)
    n_classes: int
    feasible: bool
    messages: list[str]
    seconds: float


def aggregate(problem: AllocationProblem) -> Classes:
    """Group cells with the same unit, current zone, allowed set and rounded suitabilities.

    Suitabilities of zones not allowed in a cell do not matter and are zeroed before grouping.
    """
    n = len(problem.unit)
    bits = (problem.allowed.astype(np.uint8) << np.arange(N_Z, dtype=np.uint8)).sum(
        axis=1, dtype=np.uint8
    )
    level = np.where(problem.allowed, problem.level, 0).astype(np.uint8)
    packed = np.empty((n, 4 + 1 + 1 + N_Z), dtype=np.uint8)
    packed[:, 0:4] = problem.unit.astype("<u4").view(np.uint8).reshape(n, 4)
    packed[:, 4] = problem.current
    packed[:, 5] = bits
    packed[:, 6:] = level
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    area = np.bincount(inverse, weights=problem.area_m2, minlength=len(first))
    current = problem.current[first]
    score = level[first].astype(np.float64) * problem.step
    score = score - problem.change_cost[current.astype(np.intp)]
    return Classes(
        inverse=inverse,
        unit=problem.unit[first],
        current=current,
        allowed=problem.allowed[first],
        score=np.where(problem.allowed[first], score, 0.0),
        area_m2=area,
    )


class _Model:
    """The aggregated LP: class areas × allowed zones, target rows, scaled for conditioning."""

    def __init__(self, classes: Classes, targets, margin_m2):
        self.classes = classes
        self.targets = list(targets)
        k = len(classes)
        scale = float(np.median(classes.area_m2)) if k else 1.0
        self.scale = scale if scale > 0 else 1.0
        self.area = classes.area_m2 / self.scale
        lo = np.array([-np.inf if t.min_m2 is None else t.min_m2 for t in self.targets])
        hi = np.array([np.inf if t.max_m2 is None else t.max_m2 for t in self.targets])
        lo, hi = lo / self.scale, hi / self.scale
        m = np.broadcast_to(np.asarray(margin_m2, dtype=np.float64), lo.shape) / self.scale
        lo_t = np.where(np.isfinite(lo) & (lo > 0), lo + m, lo)
        hi_t = np.where(np.isfinite(hi), hi - m, hi)
        squeeze = lo_t > hi_t
        mid = np.where(squeeze, (lo + hi) / 2, 0.0)
        self.lo = np.where(squeeze, mid, lo_t)
        self.hi = np.where(squeeze, mid, hi_t)
        self.has_lo, self.has_hi = np.isfinite(self.lo), np.isfinite(self.hi)
        self.zone_t = np.array([t.zone for t in self.targets], dtype=np.intp)
        self.scope_t = np.array([t.scope for t in self.targets], dtype=np.int64)
        # (a scope without land has no share to violate; 1 m² keeps the weights finite)
        self.denom = np.maximum(np.array([t.denom_m2 for t in self.targets]), 1.0) / self.scale

        self._members: dict[int, np.ndarray] = {}
        self._base = np.where(classes.allowed, classes.score, -np.inf)

    def in_scope(self, t: int, cls: np.ndarray) -> np.ndarray:
        if self.scope_t[t] == 0:
            return np.ones(len(cls), dtype=bool)
        return self.classes.unit[cls] == self.scope_t[t]

    def members(self, t: int) -> np.ndarray | slice:
        """Indices of the classes in target t's scope (all classes for the region)."""
        scope = int(self.scope_t[t])
        if scope == 0:
            return slice(None)
        if scope not in self._members:
            self._members[scope] = np.nonzero(self.classes.unit == scope)[0]
        return self._members[scope]

    def value(self, pi: np.ndarray) -> np.ndarray:
        """score + target prices, per class and zone (−inf where not allowed)."""
        v = self._base.copy()
        for t in range(len(self.targets)):
            if pi[t] != 0:
                v[self.members(t), self.zone_t[t]] += pi[t]
        return v

    def solve(self, sub, *, fixed_zone=None, score=None, slack=False, cap=None):
        """LP over the classes ``sub`` (the others fixed to ``fixed_zone``); maximises ``score``.

        Returns (status, y (len(sub) × 8, scaled), pi (per target), slacks, message).
        """
        cl = self.classes
        score = cl.score if score is None else score
        n_t = len(self.targets)
        var_k, var_z = np.nonzero(cl.allowed[sub])
        n_var = len(var_k)
        lo, hi = self.lo.copy(), self.hi.copy()
        if fixed_zone is not None:
            fixed = np.ones(len(cl), dtype=bool)
            fixed[sub] = False
            fk = np.nonzero(fixed)[0]
            for t in range(n_t):
                sel = fk[(fixed_zone[fk] == self.zone_t[t]) & self.in_scope(t, fk)]
                used = float(self.area[sel].sum())
                lo[t] -= used
                hi[t] -= used
        rows, cols = [], []
        idx = np.arange(n_var)
        for t in range(n_t):
            hit = idx[(var_z == self.zone_t[t]) & self.in_scope(t, sub[var_k])]
            rows.append(np.full(len(hit), t))
            cols.append(hit)
        r = np.concatenate(rows) if rows else np.empty(0, np.int64)
        c_ = np.concatenate(cols) if cols else np.empty(0, np.int64)
        g = sparse.csr_matrix((np.ones(len(r)), (r, c_)), shape=(n_t, n_var))
        has_lo, has_hi = np.isfinite(lo), np.isfinite(hi)
        a_ub = sparse.vstack([-g[has_lo], g[has_hi]]).tocsr()
        b_ub = np.concatenate([-lo[has_lo], hi[has_hi]])
        a_eq = sparse.csr_matrix(
            (np.ones(n_var), (var_k, np.arange(n_var))), shape=(len(sub), n_var)
        )
        c = -score[sub][var_k, var_z]
        n_s = 0
        if slack:
            n_s = a_ub.shape[0]
            w = np.concatenate([1 / self.denom[has_lo], 1 / self.denom[has_hi]])
            a_ub = sparse.hstack([a_ub, sparse.diags(-np.ones(n_s), format="csr")]).tocsr()
            a_eq = sparse.hstack([a_eq, sparse.csr_matrix((len(sub), n_s))]).tocsr()
            c = np.concatenate([c, np.zeros(n_s)])
            if cap is None:  # phase 1: least violation
                c = np.concatenate([np.zeros(n_var), w])
            else:
                cap_row = sparse.csr_matrix(np.concatenate([np.zeros(n_var), w])[None, :])
                a_ub = sparse.vstack([a_ub, cap_row]).tocsr()
                b_ub = np.concatenate([b_ub, [cap]])
        from scipy.optimize import linprog  # 0.2 s to import: only when allocating

        res = linprog(
            c,
            A_ub=a_ub if a_ub.shape[0] else None,
            b_ub=b_ub if a_ub.shape[0] else None,
            A_eq=a_eq,
            b_eq=self.area[sub],
            bounds=(0, None),
            method="highs",
        )
        if res.status != 0:
            return res.status, None, None, None, res.message, None
        y = np.zeros((len(sub), N_Z))
        y[var_k, var_z] = np.maximum(res.x[:n_var], 0.0)
        pi = np.zeros(n_t)
        if a_ub.shape[0] and res.ineqlin is not None:
            marg = np.asarray(res.ineqlin.marginals)
            n_lo = int(has_lo.sum())
            pi[np.nonzero(has_lo)[0]] -= marg[:n_lo]
            pi[np.nonzero(has_hi)[0]] += marg[n_lo : n_lo + int(has_hi.sum())]
        slacks = res.x[n_var:] if n_s else np.zeros(0)
        return 0, y, pi, slacks, res.message, (has_lo, has_hi)

    def coarse_prices(self, *, slack=False, cap=None, max_classes=20_000):
        """Target prices from an LP on coarser classes (scores rounded to a wider step)."""
        cl = self.classes
        bits = (cl.allowed.astype(np.uint16) << np.arange(N_Z, dtype=np.uint16)).sum(axis=1)
        for step in (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 4.0):
            q = np.where(cl.allowed, np.floor(cl.score / step), 0).astype(np.int64)
            # a 64-bit hash of (unit, current, allowed, rounded scores): a collision would only
            # merge two coarse classes, which changes the starting prices, never the answer
            key = (cl.unit.astype(np.int64) * 8 + cl.current) * 512 + bits
            for z in range(N_Z):
                key = key * np.int64(1_000_003) + q[:, z]
            _, first, inv = np.unique(key, return_index=True, return_inverse=True)
            if len(first) <= max_classes or step == 4.0:
                break
        inv = inv.ravel()
        area = np.bincount(inv, weights=cl.area_m2, minlength=len(first))
        mean = np.zeros((len(first), N_Z))
        for z in range(N_Z):
            mean[:, z] = np.bincount(inv, weights=cl.score[:, z] * cl.area_m2, minlength=len(first))
        mean /= np.maximum(area, 1e-300)[:, None]
        coarse = Classes(inv, cl.unit[first], cl.current[first], cl.allowed[first], mean, area)
        sub_model = _Model(coarse, self.targets, 0.0)
        sub_model.lo, sub_model.hi = (
            self.lo * self.scale / sub_model.scale,
            self.hi * (self.scale / sub_model.scale),
        )
        sub_model.denom = self.denom * self.scale / sub_model.scale
        cap_c = None if cap is None else cap
        status, _, pi, _, _, _ = sub_model.solve(np.arange(len(coarse)), slack=slack, cap=cap_c)
        return (pi if status == 0 else np.zeros(len(self.targets))), step


def _dual(model: _Model, pi: np.ndarray) -> tuple[float, np.ndarray]:
    """Lagrangian dual of the LP at target prices ``pi`` (an upper bound of the optimum) and
    a subgradient. ``pi_t > 0`` prices a minimum, ``pi_t < 0`` a maximum."""
    v = model.value(pi)
    zbest = np.argmax(v, axis=1)
    best = v[np.arange(len(v)), zbest]
    rhs = np.where(pi > 0, model.lo, np.where(pi < 0, model.hi, 0.0))
    d = float(model.area @ best) - float(np.nan_to_num(rhs) @ pi)
    g = np.zeros(len(pi))
    for t in range(len(pi)):
        m = model.members(t)
        got = float(model.area[m][zbest[m] == model.zone_t[t]].sum())
        if got < model.lo[t]:
            g[t] = got - model.lo[t]
        elif got > model.hi[t]:
            g[t] = got - model.hi[t]
        elif pi[t] > 0:
            g[t] = got - model.lo[t]
        elif pi[t] < 0:
            g[t] = got - model.hi[t]
    return d, g


def _bundle_prices(model: _Model, pi0: np.ndarray, *, iters: int = 150) -> np.ndarray:
    """Refine target prices by minimising the dual with a trust-region cutting-plane method.

    Cheap (each step is one pass over the classes plus a tiny LP); the prices need not be
    exact, they only decide which classes the exact LP of :func:`solve_classes` looks at.
    """
    n = len(pi0)
    lo_dom = np.where(np.isfinite(model.hi), -np.inf, 0.0)  # no max: price >= 0
    hi_dom = np.where(np.isfinite(model.lo), np.inf, 0.0)  # no min: price <= 0
    centre = np.clip(pi0, lo_dom, hi_dom)
    d_c, g_c = _dual(model, centre)
    cuts_g, cuts_b = [g_c], [float(g_c @ centre) - d_c]
    radius = 0.5
    for _ in range(iters):
        a = np.hstack([np.array(cuts_g), -np.ones((len(cuts_g), 1))])
        b = np.array(cuts_b)
        bounds = [
            (max(lo_dom[t], centre[t] - radius), min(hi_dom[t], centre[t] + radius))
            for t in range(n)
        ] + [(None, None)]
        from scipy.optimize import linprog

        res = linprog(np.r_[np.zeros(n), 1.0], A_ub=a, b_ub=b, bounds=bounds, method="highs")
        if res.status != 0:
            break
        cand, model_val = res.x[:n], res.x[n]
        predicted = d_c - model_val
        if predicted <= 1e-9 * (1 + abs(d_c)):
            if radius < 1e-6:
                break
            radius /= 4
            continue
        d_new, g_new = _dual(model, cand)
        cuts_g.append(g_new)
        cuts_b.append(float(g_new @ cand) - d_new)
        if d_c - d_new >= 0.1 * predicted:  # enough decrease: move the centre
            if np.abs(cand - centre).max() >= radius * 0.99:
                radius *= 2
            centre, d_c = cand, d_new
        else:
            radius /= 2
        if len(cuts_g) > 4 * n + 20:  # keep the master LP small
            cuts_g, cuts_b = cuts_g[-(2 * n + 10) :], cuts_b[-(2 * n + 10) :]
    return centre


def _near_tie(v: np.ndarray, delta: float) -> np.ndarray:
    top2 = -np.partition(-v, 1, axis=1)[:, :2]
    gap = top2[:, 0] - top2[:, 1]
    return ~(gap > delta)  # single-zone classes have gap inf: never free


def solve_classes(
    classes: Classes,
    targets: tuple[TargetBound, ...] | list[TargetBound],
    *,
    margin_m2: float | np.ndarray = 0.0,
    max_direct_vars: int = 100_000,
    prices: np.ndarray | None = None,
) -> LPSolution:
    """Solve the aggregated LP exactly (HiGHS); minimise violations first if infeasible.

    ``margin_m2`` (one area, or one per target) tightens bounds by that area (``min + margin``,
    ``max − margin``) so that rounding cells afterwards cannot break a target.

    Small problems (up to ``max_direct_vars`` class × zone variables) go to HiGHS whole.
    Larger ones are solved by *sifting* on target prices: prices from an LP on coarser classes
    fix every class whose best zone clearly wins at those prices; the LP over the remaining
    classes gives new prices; classes whose fixed zone is no longer their best at the new prices
    are freed, until none is. At the end every fixed class takes a zone of maximal reduced
    value, so the LP's dual solution extends to all classes: the optimality certificate of the
    whole LP (complementary slackness), not an approximation.
    """
    model = _Model(classes, targets, margin_m2)
    k = len(classes)
    every = np.arange(k)
    slack, cap = False, None
    if targets:
        # feasibility: depends only on units, allowed sets and areas — a tiny LP
        bits = (classes.allowed.astype(np.uint16) << np.arange(N_Z, dtype=np.uint16)).sum(axis=1)
        key = np.column_stack([classes.unit, bits])
        _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inv = inv.ravel()
        area = np.bincount(inv, weights=classes.area_m2, minlength=len(first))
        feas = Classes(
            inv,
            classes.unit[first],
            classes.current[first],
            classes.allowed[first],
            np.zeros((len(first), N_Z)),
            area,
        )
        fm = _Model(feas, targets, 0.0)
        fm.lo = model.lo * model.scale / fm.scale
        fm.hi = model.hi * model.scale / fm.scale
        fm.denom = model.denom * model.scale / fm.scale
        status, _, _, s, msg, _ = fm.solve(np.arange(len(feas)), slack=True)
        if status != 0:
            raise EcoplanError(f"allocation: the LP solver failed ({msg})")
        w = _slack_weights(fm)
        v_star = float(w @ s)
        if v_star > 1e-9:
            slack, cap = True, v_star * (1 + 1e-7) + 1e-12
    n_var = int(classes.allowed.sum())
    if n_var <= max_direct_vars:
        status, y, pi, s, msg, has = model.solve(every, slack=slack, cap=cap)
        if status != 0:
            raise EcoplanError(f"allocation: the LP solver failed ({msg})")
        return _solution(model, y, s, has, slack, pi)

    t0 = time.perf_counter()
    if prices is not None and not slack:
        pi, delta = _bundle_prices(model, prices, iters=30), 1e-3
    else:
        pi, coarse_step = model.coarse_prices(slack=slack, cap=cap)
        delta = 2 * coarse_step
        if not slack:
            pi, delta = _bundle_prices(model, pi), 1e-3
    log.debug("prices in %.1f s", time.perf_counter() - t0)
    v = model.value(pi)
    free = _near_tie(v, delta)
    fixed_zone = np.argmax(v, axis=1)
    for it in range(50):
        sub = np.nonzero(free)[0]
        log.debug("sifting %d: %d of %d classes free", it, len(sub), k)
        status, y_sub, pi, s, msg, has = model.solve(
            sub, fixed_zone=fixed_zone, slack=slack, cap=cap
        )
        if status == 2:  # the fixed choices leave the rest infeasible: free more classes
            delta *= 2
            free |= _near_tie(v, delta)
            if free.all():
                break
            continue
        if status != 0:
            raise EcoplanError(f"allocation: the LP solver failed ({msg})")
        v = model.value(pi)
        fixed = np.nonzero(~free)[0]
        best = v[fixed].max(axis=1)
        mine = v[fixed, fixed_zone[fixed]]
        wrong = fixed[mine < best - 1e-7 * (1 + np.abs(best))]
        if len(wrong) == 0:
            y = np.zeros((k, N_Z))
            y[fixed, fixed_zone[fixed]] = model.area[fixed]
            y[sub] = y_sub
            return _solution(model, y, s, has, slack, pi)
        free[wrong] = True
    status, y, pi, s, msg, has = model.solve(every, slack=slack, cap=cap)
    if status != 0:
        raise EcoplanError(f"allocation: the LP solver failed ({msg})")
    return _solution(model, y, s, has, slack, pi)


def _slack_weights(model: _Model) -> np.ndarray:
    return np.concatenate([1 / model.denom[model.has_lo], 1 / model.denom[model.has_hi]])


def _solution(model: _Model, y, s, has, slack: bool, pi=None) -> LPSolution:
    y_m2 = y * model.scale
    obj = float((model.classes.score * y_m2).sum())
    shortfall, excess = {}, {}
    if slack:
        has_lo, has_hi = has
        n_lo = int(has_lo.sum())
        for t, v in zip(np.nonzero(has_lo)[0], s[:n_lo], strict=True):
            if v > 1e-6 * model.denom[t]:
                shortfall[int(t)] = float(v * model.scale)
        for t, v in zip(np.nonzero(has_hi)[0], s[n_lo:], strict=True):
            if v > 1e-6 * model.denom[t]:
                excess[int(t)] = float(v * model.scale)
    return LPSolution(y_m2, obj, not shortfall and not excess, shortfall, excess, pi)


def _y_matrix(x, var_k, var_z, k) -> np.ndarray:
    y = np.zeros((k, N_Z))
    y[var_k, var_z] = np.maximum(x, 0.0)
    return y


def disaggregate(problem: AllocationProblem, classes: Classes, y_m2: np.ndarray) -> np.ndarray:
    """Zone of every cell from the class areas ``y_m2`` (K × 8), deterministically.

    Within a class, cells in raster order fill zones in code order: a cell takes the zone whose
    cumulative-area interval holds the middle of the cell's own cumulative interval. Each
    class's area per zone is then within one cell of ``y_m2``.
    """
    n = len(problem.unit)
    inv = classes.inverse
    order = np.lexsort((np.arange(n), inv))
    a = problem.area_m2[order]
    cls = inv[order]
    cum = np.cumsum(a)
    first = np.searchsorted(cls, np.arange(len(classes)))
    before = np.concatenate([[0.0], cum])[first]
    mid = cum - a / 2 - before[cls]
    bounds = np.cumsum(y_m2, axis=1)
    # past the last zone with area, every boundary is +inf so float noise cannot spill over
    positive = y_m2 > 0
    last = np.where(positive.any(axis=1), N_Z - 1 - np.argmax(positive[:, ::-1], axis=1), 0)
    bounds[np.arange(N_Z)[None, :] >= last[:, None]] = np.inf
    zone = np.zeros(n, dtype=np.uint8)
    for z in range(N_Z):
        zone += (mid >= bounds[cls, z]).astype(np.uint8)
    out = np.empty(n, dtype=np.uint8)
    out[order] = zone
    # a class the LP left empty (area 0 — cannot happen for real cells) keeps today's zone
    empty = ~positive.any(axis=1)
    if empty.any():
        keep = empty[inv]
        out[keep] = problem.current[keep]
    return out


def realised_areas(problem: AllocationProblem, zones: np.ndarray) -> list[float]:
    """Area (m²) of each target's zone in its scope under an allocation ``zones``."""
    out = []
    for t in problem.targets:
        sel = zones == t.zone
        if t.scope != 0:
            sel &= problem.unit == t.scope
        out.append(float(problem.area_m2[sel].sum()))
    return out


def _broken(targets, realised: list[float]) -> list[tuple[int, float]]:
    """Targets broken by realised areas: (index, signed m², < 0 short of min, > 0 above max)."""
    bad = []
    for i, (t, got) in enumerate(zip(targets, realised, strict=True)):
        tol = _TOL * max(t.denom_m2, 1.0)
        if t.min_m2 is not None and got < t.min_m2 - tol:
            bad.append((i, got - t.min_m2))
        elif t.max_m2 is not None and got > t.max_m2 + tol:
            bad.append((i, got - t.max_m2))
    return bad


def _solve_and_assign(classes: Classes, targets, assign, *, biggest_m2: float):
    """The class LP, then cells given zones by ``assign(y_m2) -> (zones, realised areas)``
    (``zones`` is whatever the caller keeps: cell zones, or a raster and its area table).

    While rounding breaks a target the LP met, that target is tightened by the most the split
    classes can round (one cell each, ``biggest_m2``) and the LP solved again (module doc).
    Returns ``(lp, zones, realised, broken)``.
    """
    lp = solve_classes(classes, targets)
    zones, realised = assign(lp.y_m2)
    broken = _broken(targets, realised)
    margin = np.zeros(len(targets))
    for _ in range(4):
        rounded = {i for i, _ in broken} - set(lp.shortfall_m2) - set(lp.excess_m2)
        if not rounded:
            break
        split = int(((lp.y_m2 > 1e-9 * biggest_m2).sum(axis=1) > 1).sum())
        for i in rounded:
            margin[i] = max(2 * margin[i], (split + 1) * biggest_m2)
        lp = solve_classes(classes, targets, margin_m2=margin, prices=lp.prices)
        zones, realised = assign(lp.y_m2)
        broken = _broken(targets, realised)
    return lp, zones, realised, broken


def _not_met(targets, realised: list[float], broken) -> list[str]:
    """One message per target the allocation cannot meet, with the area it misses by."""
    messages = []
    for i, diff in broken:
        t = targets[i]
        share = realised[i] / t.denom_m2 if t.denom_m2 else np.nan
        kind = "below its minimum" if diff < 0 else "above its maximum"
        bound = t.min_share if diff < 0 else t.max_share
        messages.append(
            f"target not met: {t.label or ZONE_BY_CODE[t.zone].name}: "
            f"{share:.2%} is {kind} {bound:.2%} by {abs(diff) / 1e4:,.1f} ha "
            f"({abs(diff) / max(t.denom_m2, 1.0):.2%} points); the allowed changes cannot reach it"
        )
    return messages


def objective(problem: AllocationProblem, zones: np.ndarray) -> float:
    """Σ area × (suitability − change cost) of an allocation."""
    s = problem.score()[np.arange(len(zones)), zones.astype(np.intp)]
    return float(s @ problem.area_m2)


def allocate(problem: AllocationProblem) -> AllocationResult:
    """Solve the allocation problem exactly (see the module docstring)."""
    t0 = time.perf_counter()
    if len(problem.unit) == 0:
        return AllocationResult(np.zeros(0, np.uint8), 0.0, 0.0, 0, True, [], 0.0)
    if not problem.allowed.any(axis=1).all():
        raise EcoplanError("allocation: some cells have no allowed zone")
    classes = aggregate(problem)

    def assign(y_m2):
        zones = disaggregate(problem, classes, y_m2)
        return zones, realised_areas(problem, zones)

    lp, zones, realised, broken = _solve_and_assign(
        classes, problem.targets, assign, biggest_m2=float(problem.area_m2.max())
    )
    messages = _not_met(problem.targets, realised, broken)
    return AllocationResult(
        zones=zones,
        objective=objective(problem, zones),
        lp_objective=lp.objective,
        n_classes=len(classes),
        feasible=not broken,
        messages=messages,
        seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------------
# The proposed plan of a region: constraints + suitability + allocation on the working grid.
# ---------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What :func:`propose_plan` gives the pipeline to write."""

    proposed: np.ndarray  # uint8 zone codes on the grid (0 outside the region)
    area_m2_before: np.ndarray  # (n_units + 1, 8) ground areas per (unit index, zone)
    area_m2_after: np.ndarray
    changes: pd.DataFrame  # the zone_changes table
    constraint_layer: gpd.GeoDataFrame  # the constraint_zones layer
    conflict_rows: list[dict]  # constraint conflicts, with the fields of the conflicts layer
    notes: list[str]
    result: AllocationResult | None = None
    weights: pd.DataFrame | None = None  # the suitability_weights table (AHP CR included)


def change_cost_matrix(transitions: dict[str, dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed 8 × 8 bool, cost 8 × 8) from the rules' transitions; staying is free."""
    allowed = np.eye(N_Z, dtype=bool)
    cost = np.zeros((N_Z, N_Z))
    for src, dests in transitions.items():
        for dst, c in dests.items():
            allowed[zone_code(src), zone_code(dst)] = True
            cost[zone_code(src), zone_code(dst)] = 0.0 if src == dst else float(c)
    return allowed, cost


def target_bounds(
    targets, *, unit_ids: list[str], region_id: str, denom_m2: np.ndarray
) -> tuple[tuple[TargetBound, ...], list[str]]:
    """The rules' targets as area bounds; ``denom_m2[i]`` is the denominator area of unit i
    (index 0 = the whole region). Targets naming an unknown unit are reported, not used."""
    out, notes = [], []
    index = {u: i + 1 for i, u in enumerate(unit_ids)}
    for t in targets:
        if t.unit is not None and t.unit not in index:
            notes.append(
                f"target for unit {t.unit!r} ({t.zone}) not used: the region's units are "
                + ", ".join(unit_ids)
            )
            continue
        scope = 0 if t.unit is None else index[t.unit]
        where = f"region {region_id}" if scope == 0 else f"unit {t.unit}"
        if denom_m2[scope] <= 0:
            notes.append(f"target for {where} ({t.zone}) not used: it has no land to share")
            continue
        bounds = []
        if t.min_share is not None:
            bounds.append(f"min {t.min_share * 100:.4g}%")
        if t.max_share is not None:
            bounds.append(f"max {t.max_share * 100:.4g}%")
        out.append(
            TargetBound(
                scope=scope,
                zone=zone_code(t.zone),
                denom_m2=float(denom_m2[scope]),
                min_share=t.min_share,
                max_share=t.max_share,
                label=f"{where}, {t.zone} {' '.join(bounds)}",
            )
        )
    return tuple(out), notes


def _realised(targets, area_after: np.ndarray) -> list[float]:
    """Area (m²) of each target's zone in its scope, from the (unit, zone) area table."""
    return [
        float(area_after[1:, t.zone].sum() if t.scope == 0 else area_after[t.scope, t.zone])
        for t in targets
    ]


def _largest_cell_m2(grid) -> float:
    from ecoplan.areas import cell_area_block

    rows = sorted({0, grid.height // 2, grid.height - 1})
    return max(float(cell_area_block(grid, r, r + 1, 0, grid.width).max()) for r in rows) * (
        1 + 1e-6
    )


class _InMemory:
    """The default ``keep`` of :func:`propose_plan`: arrays persisted in memory."""

    def __call__(self, array: da.Array) -> da.Array:
        return array.persist()

    def together(self, arrays) -> list[da.Array]:
        return list(dask.persist(*arrays))


def propose_plan(region, zones, buffers, *, keep=None) -> Plan:
    """Constraints, suitability and the allocation of a prepared region (see the module doc).

    ``region`` is a :class:`ecoplan.pipeline.Region`, ``zones`` today's zone raster (dask
    uint8, 0 outside), ``buffers`` the :class:`~ecoplan.buffers.BufferResult` list.
    ``keep`` holds rasters read several times (``keep(a)``, ``keep.together([a, b])``):
    the pipeline passes its :class:`ecoplan.holding.Holder`; the default persists in memory.

    Works block by block (:mod:`ecoplan.cell_classes`): memory holds the classes, never a
    whole-grid array, and the plan is the one :func:`allocate` gives on the same cells.
    """
    from ecoplan.areas import pair_areas_m2
    from ecoplan.cell_classes import CellInputs, assign_zones, gather_classes

    keep = keep or _InMemory()
    rules = region.rules
    grid = region.grid
    chunks = region.chunks
    notes: list[str] = []
    sv, sr = needed_inputs(rules.suitability)
    vectors, rasters = read_constraint_inputs(
        rules.constraints,
        region.config,
        grid=grid,
        chunks=chunks,
        extra_vectors=sv,
        extra_rasters=sr,
    )
    constraints, c_notes = apply_constraints(
        rules.constraints,
        grid=grid,
        chunks=chunks,
        vectors=vectors,
        rasters=rasters,
        inside=region.units,
    )
    notes += c_notes
    forbidden = forbidden_bits(buffers, constraints, like=zones)
    suit, s_notes = zone_suitability(
        rules.suitability, zones=zones, grid=grid, vectors=vectors, rasters=rasters
    )
    notes += s_notes
    step = rules.allocation.suitability_step
    levels = {z: da.round(s / step).astype(np.uint8) for z, s in suit.items()}
    units = region.units.astype(np.int32).rechunk(zones.chunks)
    n_units = len(region.unit_ids)
    area_before = pair_areas_m2(units, zones, n_a=n_units + 1, n_b=N_Z, grid=grid)

    denom_codes = [zone_code(z) for z in rules.proportions.denominator_zones]
    in_denom = np.zeros(N_Z, dtype=bool)
    in_denom[denom_codes] = True
    denom_m2 = area_before[:, in_denom].sum(axis=1)
    denom_m2[0] = denom_m2[1:].sum()  # index 0 = the region (cells outside units are not in it)

    proposed = zones
    area_after = area_before
    result = None
    has_cells = bool(area_before[1:, 1:].sum() > 0)
    if rules.allocation.enabled and has_cells:
        t0 = time.perf_counter()
        t_allowed, cost = change_cost_matrix(rules.transitions)
        t_allowed &= in_denom[:, None] & in_denom[None, :]
        t_allowed[np.arange(N_Z), np.arange(N_Z)] = True
        allowed_from = (t_allowed.astype(np.uint8) << np.arange(N_Z, dtype=np.uint8)).sum(
            axis=1, dtype=np.uint8
        )
        # read by three passes (classes, split cells, zones): computed once, together
        held = keep.together([forbidden, *(levels[z] for z in sorted(levels))])
        forbidden, levels = held[0], dict(zip(sorted(levels), held[1:], strict=True))
        inputs = CellInputs(zones, units, forbidden, levels, allowed_from, grid)
        table = gather_classes(inputs)
        targets, t_notes = target_bounds(
            rules.targets, unit_ids=region.unit_ids, region_id=region.config.id, denom_m2=denom_m2
        )
        notes += t_notes
        allowed = table.allowed
        current = table.current
        score = table.level.astype(np.float64) * step - cost[current.astype(np.intp)]
        classes = Classes(
            inverse=None,
            unit=table.unit,
            current=current,
            allowed=allowed,
            score=np.where(allowed, score, 0.0),
            area_m2=table.area_m2,
        )

        def assign(y_m2):  # the proposed raster (held) and its areas per (unit, zone)
            raster = keep(assign_zones(inputs, table, y_m2))
            areas = pair_areas_m2(units, raster, n_a=n_units + 1, n_b=N_Z, grid=grid)
            return (raster, areas), _realised(targets, areas)

        lp, (proposed, area_after), realised, broken = _solve_and_assign(
            classes, targets, assign, biggest_m2=_largest_cell_m2(grid)
        )
        messages = _not_met(targets, realised, broken)
        result = AllocationResult(
            zones=proposed,
            objective=lp.objective,
            lp_objective=lp.objective,
            n_classes=len(table),
            feasible=not broken,
            messages=messages,
            seconds=time.perf_counter() - t0,
        )
        stuck_ha = table.stuck_q * table.unit_m2 / 1e4
        if stuck_ha > 0:
            notes.append(
                f"allocation: {stuck_ha:,.0f} ha lie in a zone that buffers or constraints "
                "forbid there, but the transitions allow them no other zone; they keep their zone"
            )
        notes += [f"allocation: {m}" for m in messages]
    elif not rules.allocation.enabled:
        notes.append("allocation: disabled in the rules (allocation.enabled: false)")

    moves = pair_areas_m2(
        units * N_Z + zones, proposed, n_a=(n_units + 1) * N_Z, n_b=N_Z, grid=grid
    ).reshape(n_units + 1, N_Z, N_Z)
    moves[:, 0, :] = 0  # cells outside the region (zone 0) are not part of the plan
    moves[0] = 0
    if result is not None:
        changed = moves.sum() - np.trace(moves, axis1=1, axis2=2).sum()
        log.info(
            "allocation: %s classes, %s ha change zone, solved exactly in %.1f s",
            f"{result.n_classes:,}",
            f"{changed / 1e4:,.0f}",
            result.seconds,
        )
    changes = _changes_table(moves, region.unit_ids, region.config.id)
    constraint_layer, conflict_rows = _constraint_layers(constraints, zones, grid)
    return Plan(
        proposed=proposed,
        area_m2_before=area_before,
        area_m2_after=area_after,
        changes=changes,
        constraint_layer=constraint_layer,
        conflict_rows=conflict_rows,
        notes=notes,
        result=result,
        weights=weights_table(
            rules.suitability,
            available={
                f.id
                for f in rules.suitability.factors
                if factor_available(f, vectors=vectors, rasters=rasters)
            },
        ),
    )


def _zone_fields(prefix: str, codes) -> dict[str, list]:
    return {
        f"{prefix}zone": [int(c) for c in codes],
        f"{prefix}zone_en": [ZONE_BY_CODE[int(c)].name for c in codes],
        f"{prefix}zone_th": [ZONE_BY_CODE[int(c)].name_th for c in codes],
    }


def _changes_table(moves: np.ndarray, unit_ids, region_id) -> pd.DataFrame:
    """The from → to matrix in hectares, per unit and for the region (non-zero cells only).

    ``moves[u, from, to]`` is the ground area (m²) of unit index ``u`` going from → to.
    """
    n_units = len(unit_ids)
    rows = []
    scopes = [("unit", unit_ids[i - 1], moves[i]) for i in range(1, n_units + 1)]
    scopes.append(("region", region_id, moves[1:].sum(axis=0)))
    for level, uid, mat in scopes:
        for f, t in zip(*np.nonzero(mat > 0), strict=True):
            rows.append(
                {
                    "level": level,
                    "unit_id": uid,
                    **{k: v[0] for k, v in _zone_fields("from_", [f]).items()},
                    **{k: v[0] for k, v in _zone_fields("to_", [t]).items()},
                    "changed": bool(f != t),
                    "area_ha": float(mat[f, t]) / 1e4,
                }
            )
    cols = ["level", "unit_id", "from_zone", "from_zone_en", "from_zone_th", "to_zone"]
    cols += ["to_zone_en", "to_zone_th", "changed", "area_ha"]
    return pd.DataFrame(rows, columns=cols)


def _constraint_layers(constraints, zones, grid):
    """The constraint_zones layer and the constraint conflicts, block by block."""
    from ecoplan.areas import pair_areas_m2

    rows, conflicts = [], []
    for c in constraints:
        rule = c.rule
        on = (c.mask.rechunk(zones.chunks) > 0).astype(np.uint8)
        # ground area of each zone inside the constraint (row 1) and outside it (row 0)
        per_zone = pair_areas_m2(on, zones, n_a=2, n_b=N_Z, grid=grid)[1]
        if not (per_zone > 0).any():
            continue
        poly = vectorize(on, grid)
        rows.append(
            {
                "rule_id": rule.id,
                "rule_name": rule.name_en,
                "rule_name_th": rule.name_th,
                "source": rule.describe(),
                "forbids": ",".join(rule.forbids),
                "area_ha": float(per_zone.sum()) / 1e4,
                "geometry": poly.geometry.iloc[0],
            }
        )
        codes = [zone_code(z) for z in rule.forbids]
        if not (per_zone[codes] > 0).any():
            continue
        hit = da.where((on > 0) & da.isin(zones, codes), zones, 0).astype(np.int32)
        cp = vectorize(hit, grid)
        for value, geom in zip(cp["value"], cp.geometry, strict=True):
            conflicts.append(
                {
                    "rule_id": rule.id,
                    "rule_name": rule.name_en,
                    **{k: v[0] for k, v in _zone_fields("", [value]).items()},
                    "ring": 0,
                    "distance_m": np.nan,
                    "area_ha": float(per_zone[int(value)]) / 1e4,
                    "geometry": geom,
                }
            )
    cols = ["rule_id", "rule_name", "rule_name_th", "source", "forbids", "area_ha", "geometry"]
    layer = gpd.GeoDataFrame(rows, columns=cols, geometry="geometry", crs=grid.crs)
    return layer, conflicts
