"""Supervised classification of imagery into zones (``ecoplan classify ml``).

Flow: :func:`open_imagery` (one or more rasters; bands stacked as features, later images
resampled onto the first one's grid) -> :func:`training_samples` (points or polygons in any CRS,
reprojected to the imagery; each polygon and each spatial block is a CV group) ->
:func:`fit_model` (any scikit-learn classifier by name, seeded) -> :func:`cross_validate`
(spatially blocked: a polygon's pixels, and all samples of one block, are never in both train
and test) -> :func:`predict_zones` (block by block, bounded memory) -> :func:`accuracy_report`
(class and zone level, Olofsson et al. 2014 area estimates).

Labels are the user's classes; a crosswalk maps them to zones (labels that are zone names need
none). Models are saved with :mod:`joblib` (a pickle: load only files you trust).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import rasterio
import sklearn
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from scipy import ndimage

from ecoplan import __version__
from ecoplan.accuracy import accuracy_metrics, area_adjusted, confusion_matrix
from ecoplan.classify import text_zone
from ecoplan.errors import InputError
from ecoplan.grid import Grid
from ecoplan.io import open_raster
from ecoplan.rules import SPLIT_ZONE, Crosswalk
from ecoplan.zones import NODATA, ZONE_BY_CODE, ZONE_BY_NAME, zone_code

__all__ = [
    "MODEL_ALIASES",
    "Imagery",
    "Samples",
    "TrainedModel",
    "make_classifier",
    "open_imagery",
    "training_samples",
    "label_targets",
    "fit_model",
    "cross_validate",
    "predict_zones",
    "accuracy_report",
    "format_report",
    "save_model",
    "load_model",
    "MlResult",
    "run_ml",
]

log = logging.getLogger(__name__)

MODEL_ALIASES = {
    "random_forest": "RandomForestClassifier",
    "extra_trees": "ExtraTreesClassifier",
    "hist_gradient_boosting": "HistGradientBoostingClassifier",
    "gradient_boosting": "GradientBoostingClassifier",
    "decision_tree": "DecisionTreeClassifier",
    "logistic_regression": "LogisticRegression",
    "knn": "KNeighborsClassifier",
    "svm": "SVC",
    "mlp": "MLPClassifier",
    "naive_bayes": "GaussianNB",
    "lda": "LinearDiscriminantAnalysis",
}
"""Short names for common scikit-learn classifiers; any classifier class name works too."""

MODEL_FORMAT = 1


@functools.cache
def _classifiers() -> dict:
    from sklearn.utils import all_estimators

    return dict(all_estimators(type_filter="classifier"))


def make_classifier(name: str, *, seed: int = 0, params: dict | None = None):
    """A scikit-learn classifier by short name (``random_forest``) or class name
    (``HistGradientBoostingClassifier``), with ``random_state=seed`` when it takes one."""
    classes = _classifiers()
    key = MODEL_ALIASES.get(name, name)
    lookup = {k.lower(): k for k in classes}
    cls_name = lookup.get(key.lower()) or lookup.get(key.replace("_", "").lower())
    if cls_name is None:
        raise InputError(
            f"unknown model {name!r}; use a scikit-learn classifier class name or one of: "
            f"{', '.join(MODEL_ALIASES)}"
        )
    cls = classes[cls_name]
    accepted = inspect.signature(cls).parameters
    kwargs = dict(params or {})
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise InputError(
            f"model {cls_name}: unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )
    if "random_state" in accepted:
        kwargs.setdefault("random_state", seed)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise InputError(f"model {cls_name}: {err}") from err


# --- imagery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imagery:
    """Rasters whose bands are the features; the first one sets the grid.

    With ``texture_px = r > 0`` each band also gives its mean and standard deviation over the
    valid pixels of the (2r+1) x (2r+1) window around each pixel (local context that separates
    smooth water from busy city blocks in plain RGB imagery).
    """

    paths: tuple[Path, ...]
    grid: Grid
    band_names: tuple[str, ...]
    bands_per_file: tuple[int, ...]
    texture_px: int = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        if not self.texture_px:
            return self.band_names
        w = 2 * self.texture_px + 1
        return (
            *self.band_names,
            *(f"{b}:mean{w}x{w}" for b in self.band_names),
            *(f"{b}:std{w}x{w}" for b in self.band_names),
        )

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def open_imagery(paths, *, texture_px: int = 0) -> Imagery:
    """Open and check the imagery: readable, georeferenced, in a projected CRS in metres."""
    paths = tuple(Path(p) for p in paths)
    if not paths:
        raise InputError("give at least one imagery file (--imagery)")
    if texture_px < 0:
        raise InputError(f"texture window radius must be >= 0 pixels (got {texture_px})")
    first = open_raster(paths[0], what="imagery")
    if first.crs.is_geographic:
        raise InputError(
            f"{paths[0]}: imagery is in a geographic CRS (degrees); warp it to a projected CRS "
            f"in metres first, e.g. gdalwarp -t_srs EPSG:32647 -tr 10 10 {paths[0].name} out.tif"
        )
    grid = Grid(first.crs, first.transform, first.height, first.width)
    names, counts = [], []
    for p in paths:
        info = open_raster(p, what="imagery")
        with rasterio.open(p) as src:
            descr = src.descriptions
        counts.append(info.count)
        names += [f"{p.stem}:{d or f'band{b + 1}'}" for b, d in enumerate(descr)]
    return Imagery(paths, grid, tuple(names), tuple(counts), int(texture_px))


def _read_bands(imagery: Imagery, r0: int, r1: int, c0: int, c1: int):
    window = Window(c0, r0, c1 - c0, r1 - r0)
    feats, valid = [], np.ones((r1 - r0, c1 - c0), dtype=bool)
    g = imagery.grid
    for k, p in enumerate(imagery.paths):
        with rasterio.open(p) as src:
            same = src.crs == g.crs and src.transform == g.transform and src.shape == g.shape
            if k == 0 or same:
                data = src.read(window=window, masked=True)
            else:
                with WarpedVRT(
                    src,
                    crs=g.crs,
                    transform=g.transform,
                    width=g.width,
                    height=g.height,
                    resampling=Resampling.bilinear,
                ) as vrt:
                    data = vrt.read(window=window, masked=True)
        valid &= ~np.ma.getmaskarray(data).any(axis=0)
        feats.append(np.asarray(data.data, dtype=np.float64))
    return np.moveaxis(np.concatenate(feats, axis=0), 0, -1), valid


def texture_block(bands: np.ndarray, valid: np.ndarray, *, radius_px: int) -> np.ndarray:
    """Mean and standard deviation of each band over the valid pixels of the (2r+1)² window.

    Halo: ``radius_px``. Each output is a direct sum over its own window (no running sums), so
    values do not depend on where a block starts. NaN-free: 0 where the window has no valid pixel.
    """
    k = np.ones((2 * radius_px + 1, 2 * radius_px + 1))
    v = valid.astype(np.float64)
    n = ndimage.correlate(v, k, mode="constant")
    means, stds = [], []
    with np.errstate(invalid="ignore", divide="ignore"):
        for b in range(bands.shape[-1]):
            x = bands[..., b] * v
            s1 = ndimage.correlate(x, k, mode="constant")
            s2 = ndimage.correlate(x * x, k, mode="constant")
            m = np.where(n > 0, s1 / n, 0.0)
            var = np.where(n > 0, s2 / n - m * m, 0.0)
            means.append(m)
            stds.append(np.sqrt(np.maximum(var, 0.0)))
    return np.stack(means + stds, axis=-1)


def read_window(
    imagery: Imagery, r0: int, r1: int, c0: int, c1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32, rows x cols x features) and a validity mask of a window of the grid.

    A pixel is valid where no band of any file is nodata (GDAL masks). Files after the first
    are resampled (bilinear) onto the first one's grid. Texture features read a halo of
    ``texture_px`` around the window (clipped to the image), so they do not depend on blocks.
    """
    h = imagery.texture_px
    g = imagery.grid
    R0, R1 = max(r0 - h, 0), min(r1 + h, g.height)
    C0, C1 = max(c0 - h, 0), min(c1 + h, g.width)
    bands, valid = _read_bands(imagery, R0, R1, C0, C1)
    if h:
        bands = np.concatenate([bands, texture_block(bands, valid, radius_px=h)], axis=-1)
    crop = (slice(r0 - R0, r0 - R0 + r1 - r0), slice(c0 - C0, c0 - C0 + c1 - c0))
    return bands[crop].astype(np.float32), valid[crop]


# --- training samples ------------------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    """Training pixels: features, labels, CV groups, and where they are on the grid."""

    X: np.ndarray  # (n, bands) float32
    labels: np.ndarray  # (n,) str
    groups: np.ndarray  # (n,) int: the polygon / spatial block a pixel belongs to
    rows: np.ndarray
    cols: np.ndarray
    feature_index: np.ndarray  # (n,) the row of the training layer each pixel came from
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)


def _block_id(x: np.ndarray, y: np.ndarray, block_m: float) -> np.ndarray:
    bx = np.floor(x / block_m).astype(np.int64)
    by = np.floor(y / block_m).astype(np.int64)
    return bx * 1_000_003 + by


def _cell(inv, x: float, y: float) -> tuple[float, float]:
    """(column, row), fractional, of the map point (x, y) by an inverse grid transform (the
    arithmetic of affine's ``inv * (x, y)``, which affine 3 deprecates)."""
    return x * inv.a + y * inv.b + inv.c, x * inv.d + y * inv.e + inv.f


def training_samples(
    training: gpd.GeoDataFrame,
    imagery: Imagery,
    *,
    label_field: str,
    block_m: float = 1000.0,
    max_pixels_per_feature: int | None = 200,
    seed: int = 0,
    source: str = "training",
) -> Samples:
    """Pixels of the imagery under training points and polygons, with their labels.

    Points take the pixel they fall in; polygons every pixel whose centre they contain (a
    polygon holding no centre takes the pixel of its representative point), at most
    ``max_pixels_per_feature`` drawn at random (seeded). CV groups: each polygon is one group,
    merged with the other features whose representative point lies in the same
    ``block_m`` x ``block_m`` block. Samples outside the image or on nodata are dropped and
    counted in ``notes``.
    """
    if label_field not in training.columns:
        fields = ", ".join(c for c in training.columns if c != training.geometry.name)
        raise InputError(f"{source}: no label field {label_field!r}; fields are: {fields}")
    if training.crs is None:
        raise InputError(f"{source}: training layer has no CRS; set one (ogr2ogr -a_srs …)")
    g = imagery.grid
    gdf = training.to_crs(g.crs)
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    labels = gdf[label_field]
    missing = labels.isna() | (labels.astype(str).str.strip() == "")
    notes = []
    if missing.any():
        notes.append(f"{int(missing.sum())} training features without a label were skipped")
    gdf = gdf[~missing]
    kinds = set(gdf.geom_type)
    lines = kinds & {"LineString", "MultiLineString", "LinearRing"}
    if lines:
        raise InputError(
            f"{source}: training features must be points or polygons, found {', '.join(lines)}"
        )
    rng = np.random.default_rng(seed)
    inv = ~g.transform
    rows, cols, fidx = [], [], []
    rep = gdf.geometry.representative_point()
    groups_of_feature = _block_id(rep.x.to_numpy(), rep.y.to_numpy(), block_m)
    for k, (geom, pt) in enumerate(zip(gdf.geometry.values, rep.values, strict=True)):
        r = c = None
        if geom.geom_type in ("Polygon", "MultiPolygon"):
            minx, miny, maxx, maxy = geom.bounds
            c0, r0 = (int(math.floor(v)) for v in _cell(inv, minx, maxy))
            c1, r1 = (int(math.ceil(v)) for v in _cell(inv, maxx, miny))
            c0, r0 = max(c0, 0), max(r0, 0)
            c1, r1 = min(c1, g.width), min(r1, g.height)
            if c1 > c0 and r1 > r0:
                mask = rasterize(
                    [(geom, 1)],
                    out_shape=(r1 - r0, c1 - c0),
                    transform=g.window_transform(r0, c0),
                    dtype="uint8",
                )
                rr, cc = np.nonzero(mask)
                r, c = rr + r0, cc + c0
            if r is None or len(r) == 0:
                geom = pt
        if geom.geom_type in ("Point", "MultiPoint"):
            pts = [geom] if geom.geom_type == "Point" else list(geom.geoms)
            r = np.array([int(math.floor(_cell(inv, p.x, p.y)[1])) for p in pts])
            c = np.array([int(math.floor(_cell(inv, p.x, p.y)[0])) for p in pts])
        if r is None:
            continue
        if max_pixels_per_feature and len(r) > max_pixels_per_feature:
            pick = np.sort(rng.choice(len(r), max_pixels_per_feature, replace=False))
            r, c = r[pick], c[pick]
        rows.append(r)
        cols.append(c)
        fidx.append(np.full(len(r), k))
    if not rows:
        raise InputError(f"{source}: no training feature falls on the imagery")
    rows, cols, fidx = np.concatenate(rows), np.concatenate(cols), np.concatenate(fidx)
    inside = (rows >= 0) & (rows < g.height) & (cols >= 0) & (cols < g.width)
    X = np.zeros((len(rows), imagery.n_features), np.float32)
    ok = np.zeros(len(rows), bool)
    # read each 1024 x 1024 block of the image once
    block = 1024
    key = np.where(inside, (rows // block) * 1_000_000 + cols // block, -1)
    for kb in np.unique(key[inside]):
        sel = np.flatnonzero(key == kb)
        br, bc = int(kb // 1_000_000) * block, int(kb % 1_000_000) * block
        r1, c1 = min(br + block, g.height), min(bc + block, g.width)
        feats, valid = read_window(imagery, br, r1, bc, c1)
        X[sel] = feats[rows[sel] - br, cols[sel] - bc]
        ok[sel] = valid[rows[sel] - br, cols[sel] - bc]
    n_out, n_nodata = int((~inside).sum()), int((inside & ~ok).sum())
    if n_out:
        notes.append(f"{n_out} training pixels outside the imagery were dropped")
    if n_nodata:
        notes.append(f"{n_nodata} training pixels on nodata were dropped")
    if not ok.any():
        raise InputError(f"{source}: every training sample falls outside the imagery or on nodata")
    col = gdf[label_field]
    if col.dtype.kind == "f" and (col.dropna() % 1 == 0).all():
        col = col.astype("Int64")  # class 3 stored as 3.0 (shapefile numbers) reads "3"
    label_values = col.astype(str).str.strip().to_numpy()
    return Samples(
        X=X[ok],
        labels=label_values[fidx[ok]],
        groups=groups_of_feature[fidx[ok]],
        rows=rows[ok],
        cols=cols[ok],
        feature_index=fidx[ok],
        notes=tuple(notes),
    )


def label_targets(labels, crosswalk: Crosswalk | None, *, source: str = "labels") -> dict[str, str]:
    """The zone of each label: through the crosswalk, or the label itself when it names a zone."""
    out, bad = {}, []
    for label in sorted(set(map(str, labels))):
        target = text_zone(label, crosswalk) if crosswalk is not None else None
        if crosswalk is None and label in ZONE_BY_NAME:
            target = label
        if target is None and crosswalk is not None and crosswalk.on_unmapped == "other":
            target = "other"
        if target is None:
            bad.append(label)
        elif target == SPLIT_ZONE:
            raise InputError(
                f"{source}: label {label!r} maps to built_up; the ML path maps labels straight "
                "to zones: map it to urban or rural in the label crosswalk"
            )
        else:
            out[label] = target
    if bad:
        how = (
            f"add them to crosswalk {crosswalk.name!r}"
            if crosswalk is not None
            else f"give --crosswalk LABELS.yaml, or use zone names ({', '.join(ZONE_BY_NAME)})"
        )
        raise InputError(
            f"{source}: label{'s' if len(bad) > 1 else ''} {', '.join(bad)} have no zone; {how}"
        )
    return out


# --- model -----------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted classifier and what it needs to be applied to another image."""

    estimator: object
    classes: tuple[str, ...]
    label_zone: dict[str, str]
    band_names: tuple[str, ...]  # the features: bands, then texture features
    model_name: str
    seed: int
    texture_px: int = 0
    n_bands: int = 0
    params: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.band_names)


def _fit(est, X, y, *, balance: bool):
    """Fit, weighting each class equally (``balance``) when the estimator takes sample weights.

    Weight of a sample of class c: ``n / (k n_c)`` (scikit-learn's "balanced" weights), so a
    class with many pixels (a river polygon) does not drown the others.
    """
    if balance and "sample_weight" in inspect.signature(est.fit).parameters:
        classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
        weight = len(y) / (len(classes) * counts[inv])
        return est.fit(X, y, sample_weight=weight)
    return est.fit(X, y)


def fit_model(
    samples: Samples,
    label_zone: dict[str, str],
    *,
    band_names,
    model: str = "random_forest",
    seed: int = 0,
    params: dict | None = None,
    balance: bool = True,
    texture_px: int = 0,
    n_bands: int = 0,
) -> TrainedModel:
    """Fit a classifier on the samples (labels as classes; classes weighted equally)."""
    if len(set(samples.labels)) < 2:
        raise InputError(
            "training needs at least two classes; found only " + str(set(samples.labels))
        )
    est = make_classifier(model, seed=seed, params=params)
    _fit(est, samples.X, samples.labels, balance=balance)
    return TrainedModel(
        estimator=est,
        classes=tuple(str(c) for c in est.classes_),
        label_zone=dict(label_zone),
        band_names=tuple(band_names),
        model_name=type(est).__name__,
        texture_px=texture_px,
        n_bands=n_bands,
        seed=seed,
        params=dict(params or {}),
        versions={"ecoplan": __version__, "scikit-learn": sklearn.__version__},
    )


def cross_validate(
    samples: Samples,
    *,
    model: str = "random_forest",
    seed: int = 0,
    params: dict | None = None,
    folds: int = 5,
    balance: bool = True,
) -> tuple[np.ndarray, dict]:
    """Out-of-fold predictions with spatially blocked, stratified group k-fold.

    Groups are polygons merged by spatial block (:func:`training_samples`), so no polygon and
    no block has pixels in both the training and the test part of a fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(samples.groups))
    k = min(folds, n_groups)
    if k < 2:
        raise InputError(
            f"spatially blocked cross-validation needs at least 2 groups; the samples fall in "
            f"{n_groups} block(s): use a smaller block size or spread the samples"
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    pred = np.empty(len(samples), dtype=object)
    for train, test in cv.split(samples.X, samples.labels, samples.groups):
        assert not set(samples.groups[train]) & set(samples.groups[test])
        est = make_classifier(model, seed=seed, params=params)
        _fit(est, samples.X[train], samples.labels[train], balance=balance)
        pred[test] = est.predict(samples.X[test])
    info = {
        "method": "StratifiedGroupKFold",
        "folds": k,
        "groups": n_groups,
        "samples": len(samples),
    }
    return pred.astype(str), info


def _predict_block(model: TrainedModel, imagery: Imagery, lut: np.ndarray, block_info=None):
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    feats, valid = read_window(imagery, r0, r1, c0, c1)
    out = np.zeros((r1 - r0, c1 - c0), dtype=np.uint8)
    if valid.any():
        pred = model.estimator.predict(feats[valid])
        idx = np.searchsorted(np.asarray(model.classes), pred)
        out[valid] = lut[idx]
    return out


def predict_zones(model: TrainedModel, imagery: Imagery, *, chunk_size: int = 512) -> da.Array:
    """Zone codes (uint8, 0 = nodata) predicted block by block; memory is bounded by a block."""
    if len(imagery.band_names) != model.n_bands:
        raise InputError(
            f"the model was trained on {model.n_bands} bands; the imagery "
            f"({', '.join(str(p) for p in imagery.paths)}) has {len(imagery.band_names)}"
        )
    imagery = dataclasses.replace(imagery, texture_px=model.texture_px)
    lut = np.array([zone_code(model.label_zone[c]) for c in model.classes], dtype=np.uint8)
    g = imagery.grid
    return da.map_blocks(
        _predict_block,
        model,
        imagery,
        lut,
        chunks=da.core.normalize_chunks((chunk_size, chunk_size), g.shape),
        dtype=np.uint8,
        meta=np.empty((0, 0), np.uint8),
        name=f"ml-predict-{uuid.uuid4().hex}",  # no hashing of a large model
    )


def zone_pixel_counts(path: str | Path) -> dict[int, int]:
    """Pixels per zone code in a zone raster, read block by block (an I/O function)."""
    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(path) as src:
        for _, window in src.block_windows(1):
            counts += np.bincount(src.read(1, window=window).ravel(), minlength=256)
    return {int(k): int(v) for k, v in enumerate(counts) if v and k != NODATA}


# --- accuracy report -------------------------------------------------------------------------


def accuracy_report(
    reference: np.ndarray,
    predicted: np.ndarray,
    label_zone: dict[str, str],
    *,
    map_zone_pixels: dict[int, int],
    pixel_area_ha: float,
    validation: str,
) -> dict:
    """Class-level and zone-level accuracy and Olofsson et al. area estimates per zone.

    Top-level keys ``overall_accuracy``, ``kappa``, ``per_class`` and ``confusion_matrix`` are
    class level; ``zone_level`` holds the same per zone; ``area_estimates`` is per zone.
    """
    classes = sorted(label_zone)
    n_cls = confusion_matrix(predicted, reference, classes)
    cls = accuracy_metrics(n_cls, classes)
    z_ref = [label_zone[x] for x in reference]
    z_pred = [label_zone[x] for x in predicted]
    zones = [z.name for z in ZONE_BY_CODE.values() if z.name in set(label_zone.values())]
    mapped = [ZONE_BY_CODE[c].name for c in map_zone_pixels]
    zones += [z for z in mapped if z not in zones]
    n_zone = confusion_matrix(z_pred, z_ref, zones)
    zl = accuracy_metrics(n_zone, zones)
    pixels = [map_zone_pixels.get(zone_code(z), 0) for z in zones]
    area = area_adjusted(n_zone, pixels, zones, pixel_area_ha=pixel_area_ha)
    matrix = {"rows": "map (predicted)", "columns": "reference (label)"}
    return {
        "validation": validation,
        "n_samples": cls["n"],
        "overall_accuracy": cls["overall_accuracy"],
        "kappa": cls["kappa"],
        "per_class": cls["per_class"],
        "confusion_matrix": {**matrix, "classes": classes, "counts": n_cls.tolist()},
        "zone_level": {
            "overall_accuracy": zl["overall_accuracy"],
            "kappa": zl["kappa"],
            "per_class": zl["per_class"],
            "confusion_matrix": {**matrix, "classes": zones, "counts": n_zone.tolist()},
        },
        "area_estimates": area,
        "caveats": [
            "Samples are the training data, evaluated out of fold (spatially blocked); they are "
            "not a probability sample, so the Olofsson area estimates and confidence intervals "
            "hold only as far as the samples are representative of each mapped zone.",
            "Pixels of one polygon are correlated; the effective sample size is smaller than "
            "n_samples, so the intervals are too narrow.",
        ],
    }


def _fmt(v) -> str:
    return "  n/a" if v is None or v != v else f"{v:5.3f}"


def format_report(report: dict) -> str:
    """The report as plain text for people."""
    lines = [
        f"Accuracy ({report['validation']}, {report['n_samples']} samples)",
        f"  class level: overall accuracy {_fmt(report['overall_accuracy'])}, "
        f"kappa {_fmt(report['kappa'])}",
        f"  zone level:  overall accuracy {_fmt(report['zone_level']['overall_accuracy'])}, "
        f"kappa {_fmt(report['zone_level']['kappa'])}",
        "",
    ]
    for title, block in (("class", report), ("zone", report["zone_level"])):
        lines.append(f"{title:<14} precision recall    f1  support")
        for name, m in block["per_class"].items():
            lines.append(
                f"{name:<14} {_fmt(m['precision'])}     {_fmt(m['recall'])} {_fmt(m['f1'])} "
                f"{m['support']:>8}"
            )
        cm = block["confusion_matrix"]
        lines.append(f"confusion matrix (rows map, columns reference): {', '.join(cm['classes'])}")
        lines += ["  " + " ".join(f"{v:>7}" for v in row) for row in cm["counts"]]
        lines.append("")
    a = report["area_estimates"]
    lines.append(
        f"Area estimates (Olofsson et al. 2014), total {a['total_area_ha']:,.1f} ha; "
        f"overall accuracy {_fmt(a['overall_accuracy'])} ± {_fmt(a['overall_accuracy_ci95'])}"
    )
    lines.append(
        f"{'zone':<12} {'mapped ha':>11} {'estimated ha':>13} {'± 95 % CI':>11}  user's  producer's"
    )
    for name, m in a["classes"].items():
        lines.append(
            f"{name:<12} {m['map_area_ha']:>11,.1f} {m['estimated_area_ha']:>13,.1f} "
            f"{m['ci95_area_ha']:>11,.1f}  {_fmt(m['users_accuracy'])}   "
            f"{_fmt(m['producers_accuracy'])}"
        )
    if a["unsampled_map_classes"]:
        lines.append(f"mapped but never sampled: {', '.join(a['unsampled_map_classes'])}")
    lines += ["", *(f"note: {c}" for c in report.get("caveats", []))]
    return "\n".join(lines) + "\n"


# --- saving and loading (I/O) ----------------------------------------------------------------


def save_model(model: TrainedModel, path: str | Path) -> Path:
    """Save a trained model with :func:`joblib.dump` (a pickle)."""
    import joblib

    from ecoplan.export import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        joblib.dump({"format": MODEL_FORMAT, "kind": "ecoplan.ml", "model": model}, tmp)
    return path


def load_model(path: str | Path) -> TrainedModel:
    """Load a model saved by :func:`save_model`. A pickle runs code: load only trusted files."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        blob = joblib.load(path)
    except Exception as err:
        raise InputError(
            f"{path}: not an ecoplan model file ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(blob, dict) or blob.get("kind") != "ecoplan.ml":
        raise InputError(f"{path}: not an ecoplan model file (save one with --save-model)")
    if blob.get("format") != MODEL_FORMAT:
        raise InputError(
            f"{path}: model format {blob.get('format')} is not {MODEL_FORMAT}; retrain it"
        )
    model = blob["model"]
    if model.versions.get("scikit-learn") != sklearn.__version__:
        log.warning(
            "%s: saved with scikit-learn %s, running %s; predictions may differ",
            path,
            model.versions.get("scikit-learn"),
            sklearn.__version__,
        )
    return model


# --- the whole path, for the CLI and notebooks -----------------------------------------------


@dataclass
class MlResult:
    """What ``run_ml`` produced."""

    zone_raster: Path
    report: dict | None
    report_path: Path | None
    model: TrainedModel
    notes: list[str]


def run_ml(
    imagery_paths,
    *,
    out: str | Path,
    training: str | Path | gpd.GeoDataFrame | None = None,
    training_layer: str | None = None,
    label_field: str | None = None,
    crosswalk: str | Path | None = None,
    report_path: str | Path | None = None,
    model: str = "random_forest",
    seed: int = 0,
    params: dict | None = None,
    folds: int = 5,
    block_m: float = 1000.0,
    max_pixels_per_feature: int | None = 200,
    balance: bool = True,
    texture_px: int = 1,
    chunk_size: int = 512,
    save_model_path: str | Path | None = None,
    load_model_path: str | Path | None = None,
    overwrite: bool = False,
) -> MlResult:
    """Train (or load) a model, map the imagery to zones and assess the accuracy.

    With ``training`` and no ``load_model_path``: spatially blocked cross-validation, then a
    model fitted on every sample maps the image. With ``load_model_path``: the saved model maps
    the image, and ``training`` (if given) is an independent validation sample.
    """
    from ecoplan.export import atomic_path, write_zone_raster
    from ecoplan.io import read_vector
    from ecoplan.rules import load_crosswalk

    out = Path(out)
    outputs = [p for p in (out, report_path, save_model_path) if p is not None]
    if report_path is not None:
        outputs.append(Path(report_path).with_suffix(".txt"))
    if not overwrite:
        for p in outputs:
            if Path(p).exists():
                raise InputError(
                    f"{p}: output exists; use --overwrite (overwrite=True) to replace it"
                )
    if training is None and load_model_path is None:
        raise InputError("give training samples (--training) or a saved model (--load-model)")
    if report_path is not None and training is None:
        raise InputError("an accuracy report (--report) needs reference samples (--training)")
    if load_model_path is not None:
        trained = load_model(load_model_path)
        texture_px = trained.texture_px
    imagery = open_imagery(imagery_paths, texture_px=texture_px)
    notes: list[str] = []
    samples = None
    if training is not None:
        if label_field is None:
            raise InputError("give the label field of the training samples (--label-field)")
        if isinstance(training, gpd.GeoDataFrame):
            gdf, source = training, "training"
        else:
            gdf = read_vector(training, layer=training_layer, what="training")
            source = str(training)
        samples = training_samples(
            gdf,
            imagery,
            label_field=label_field,
            block_m=block_m,
            max_pixels_per_feature=max_pixels_per_feature,
            seed=seed,
            source=source,
        )
        notes += list(samples.notes)
    cw = load_crosswalk(crosswalk) if crosswalk is not None else None
    cv_info = None
    if load_model_path is not None:
        if samples is not None:
            unknown = sorted(set(samples.labels) - set(trained.label_zone))
            if unknown:
                raise InputError(
                    f"{source}: labels {', '.join(unknown)} are not classes of the model "
                    f"({', '.join(trained.classes)})"
                )
            predicted = np.asarray(trained.estimator.predict(samples.X)).astype(str)
            validation = "independent validation samples (saved model)"
    else:
        label_zone = label_targets(samples.labels, cw, source=source)
        predicted, cv_info = cross_validate(
            samples, model=model, seed=seed, params=params, folds=folds, balance=balance
        )
        validation = (
            f"spatially blocked {cv_info['folds']}-fold cross-validation "
            f"({cv_info['groups']} groups of {block_m:g} m blocks / polygons)"
        )
        trained = fit_model(
            samples,
            label_zone,
            band_names=imagery.feature_names,
            texture_px=imagery.texture_px,
            n_bands=len(imagery.band_names),
            model=model,
            seed=seed,
            params=params,
        )
    zones = predict_zones(trained, imagery, chunk_size=chunk_size)
    tags = {"ECOPLAN_VERSION": __version__, "ML_MODEL": trained.model_name, "ML_SEED": str(seed)}
    write_zone_raster(out, zones, imagery.grid, tags=tags)
    counts = zone_pixel_counts(out)
    report = None
    if samples is not None:
        report = accuracy_report(
            samples.labels,
            predicted,
            trained.label_zone,
            map_zone_pixels=counts,
            pixel_area_ha=imagery.grid.pixel_area_m2 / 1e4,
            validation=validation,
        )
        report["model"] = {
            "name": trained.model_name,
            "seed": trained.seed,
            "params": trained.params,
            "versions": trained.versions,
            "features": list(trained.band_names),
            "label_zone": trained.label_zone,
        }
        report["cross_validation"] = cv_info
        report["notes"] = notes
    if report is not None and report_path is not None:
        report_path = Path(report_path)
        with atomic_path(report_path) as tmp:
            tmp.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        with atomic_path(report_path.with_suffix(".txt")) as tmp:
            tmp.write_text(format_report(report), encoding="utf-8")
    if save_model_path is not None:
        save_model(trained, save_model_path)
    return MlResult(out, report, Path(report_path) if report_path else None, trained, notes)
