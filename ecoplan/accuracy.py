"""Accuracy of a classified map from a reference sample.

Conventions: the confusion matrix ``n[i, j]`` counts sample units with **map** (predicted) class
``i`` and **reference** class ``j`` — rows are the map, columns the reference, as in
Olofsson et al. (2014).

- Overall accuracy ``OA = sum_i n_ii / n`` (0–1).
- Cohen's kappa ``(p_o - p_e) / (1 - p_e)`` with ``p_e = sum_i n_i. n_.i / n^2`` (−1…1).
- Per class: precision (user's accuracy) ``n_ii / n_i.``, recall (producer's accuracy)
  ``n_ii / n_.i``, F1 their harmonic mean, support ``n_.i`` (reference count).

Area-adjusted accuracy (Olofsson, Foody, Herold, Stehman, Woodcock & Wulder 2014, "Good
practices for estimating area and assessing accuracy of land change", Remote Sensing of
Environment 148: 42–57), stratified by map class with map area weights ``W_i = A_i / A``:

- ``p_ij = W_i n_ij / n_i.`` (eq. 4); estimated area share of reference class j
  ``p_.j = sum_i p_ij`` (eq. 9) and area ``A p_.j``;
- ``SE(p_.j) = sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.) / (n_i. - 1))`` (eq. 10);
  95 % CI ``± 1.96 A SE``;
- user's accuracy ``U_i = p_ii / p_i.``, producer's ``P_j = p_jj / p_.j``, overall
  ``O = sum_j p_jj`` (eqs. 2–3) with the variances of eqs. 5–7.

The estimators assume the reference sample is a random sample within each map class. A
training set collected by hand is not; the report says so.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "accuracy_metrics", "area_adjusted"]

Z95 = 1.959963984540054


def confusion_matrix(mapped, reference, classes) -> np.ndarray:
    """Counts ``n[i, j]`` of units with map class ``classes[i]`` and reference ``classes[j]``."""
    index = {c: k for k, c in enumerate(classes)}
    n = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for m, r in zip(mapped, reference, strict=True):
        n[index[m], index[r]] += 1
    return n


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def accuracy_metrics(n: np.ndarray, classes) -> dict:
    """Overall accuracy, kappa and per-class precision/recall/F1 of a confusion matrix."""
    n = np.asarray(n, dtype=np.float64)
    total = n.sum()
    diag = np.diag(n)
    rows, cols = n.sum(axis=1), n.sum(axis=0)
    po = _ratio(diag.sum(), total)
    pe = float((rows * cols).sum() / total**2) if total else float("nan")
    kappa = _ratio(po - pe, 1 - pe) if pe != 1 else float("nan")
    per_class = {}
    for k, c in enumerate(classes):
        p, r = _ratio(diag[k], rows[k]), _ratio(diag[k], cols[k])
        f1 = 2 * p * r / (p + r) if (p + r) > 0 else (0.0 if p == p and r == r else float("nan"))
        per_class[str(c)] = {
            "precision": p,
            "recall": r,
            "f1": float(f1),
            "support": int(cols[k]),
            "predicted": int(rows[k]),
        }
    return {
        "n": int(total),
        "overall_accuracy": po,
        "kappa": kappa,
        "per_class": per_class,
    }


def area_adjusted(n: np.ndarray, map_pixels, classes, *, pixel_area_ha: float) -> dict:
    """Olofsson et al. (2014) stratified estimates: areas, accuracies and 95 % CIs.

    ``n`` is the sample confusion matrix (rows map, columns reference) and ``map_pixels[i]`` the
    mapped pixel count of ``classes[i]``. Classes mapped but never in a sample row make the
    estimates biased; they are listed under ``unsampled_map_classes``.
    """
    n = np.asarray(n, dtype=np.float64)
    a_px = np.asarray(map_pixels, dtype=np.float64)
    total_px = a_px.sum()
    w = a_px / total_px if total_px else np.zeros_like(a_px)
    ni = n.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(ni[:, None] > 0, n / ni[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * frac  # eq. 4
        pj = p.sum(axis=0)  # eq. 9
        pi = p.sum(axis=1)
        dof = np.where(ni > 1, ni - 1, np.nan)
        var_pj = np.nansum(
            (w[:, None] ** 2) * frac * (1 - frac) / dof[:, None] * (ni[:, None] > 0), axis=0
        )  # eq. 10
        users = np.diag(p) / pi
        var_users = users * (1 - users) / dof  # eq. 6
        producers = np.diag(p) / pj
        overall = float(np.trace(p))
        var_overall = float(np.nansum(w**2 * users * (1 - users) / dof))  # eq. 5
        # eq. 7, producer's accuracy
        scale = np.where(ni > 0, a_px / np.where(ni > 0, ni, 1), 0.0)
        n_hat_j = (scale[:, None] * n).sum(axis=0)  # estimated reference total (pixels)
        var_prod = np.full(len(classes), np.nan)
        for j in range(len(classes)):
            if not n_hat_j[j] or not ni[j] or np.isnan(dof[j]):
                continue
            others = [i for i in range(len(classes)) if i != j and ni[i] > 1]
            term2 = sum(a_px[i] ** 2 * frac[i, j] * (1 - frac[i, j]) / (ni[i] - 1) for i in others)
            var_prod[j] = (
                a_px[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / (ni[j] - 1)
                + producers[j] ** 2 * term2
            ) / n_hat_j[j] ** 2
    per_class = {}
    for k, c in enumerate(classes):
        per_class[str(c)] = {
            "map_area_ha": float(a_px[k] * pixel_area_ha),
            "map_share": float(w[k]),
            "sample_count": int(ni[k]),
            "estimated_share": float(pj[k]),
            "estimated_area_ha": float(pj[k] * total_px * pixel_area_ha),
            "ci95_area_ha": float(Z95 * np.sqrt(var_pj[k]) * total_px * pixel_area_ha),
            "users_accuracy": float(users[k]),
            "users_accuracy_ci95": float(Z95 * np.sqrt(var_users[k])),
            "producers_accuracy": float(producers[k]),
            "producers_accuracy_ci95": float(Z95 * np.sqrt(var_prod[k])),
        }
    return {
        "method": "Olofsson et al. (2014), stratified by map class",
        "total_area_ha": float(total_px * pixel_area_ha),
        "overall_accuracy": overall,
        "overall_accuracy_ci95": float(Z95 * np.sqrt(var_overall)),
        "classes": per_class,
        "unsampled_map_classes": [
            str(c) for k, c in enumerate(classes) if a_px[k] > 0 and ni[k] == 0
        ],
    }
