"""Supervised classification: samples, models, blocked CV, accuracy, chunked prediction."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner

from ecoplan.accuracy import accuracy_metrics, area_adjusted, confusion_matrix
from ecoplan.cli.main import cli
from ecoplan.errors import InputError
from ecoplan.ml import (
    cross_validate,
    fit_model,
    label_targets,
    load_model,
    make_classifier,
    open_imagery,
    predict_zones,
    read_window,
    run_ml,
    save_model,
    training_samples,
)
from ecoplan.rules import load_crosswalk

DATA = Path(__file__).parent / "data"
X0, Y1, PX = 600_000.0, 1_500_000.0, 10.0
FAST = {"n_estimators": 25}


def write_image(path, bands: np.ndarray, *, nodata=0, x0=X0) -> Path:
    count, h, w = bands.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=count,
        dtype="uint8",
        crs="EPSG:32647",
        transform=Affine(PX, 0, x0, 0, -PX, Y1),
        nodata=nodata,
    ) as dst:
        dst.write(bands.astype(np.uint8))
    return Path(path)


def two_class_image(tmp_path, name="img.tif", x0=X0) -> Path:
    """40 x 40 px: left half dark and smooth (water), right half bright (built); noise seeded."""
    rng = np.random.default_rng(0)
    b = np.zeros((2, 40, 40))
    b[:, :, :20] = 30 + rng.integers(0, 5, (2, 40, 20))
    b[:, :, 20:] = 180 + rng.integers(0, 40, (2, 40, 20))
    b[:, :2, :2] = 0  # a nodata corner
    return write_image(tmp_path / name, b, x0=x0)


def pixel_point(col, row):
    return shapely.Point(X0 + PX * (col + 0.5), Y1 - PX * (row + 0.5))


def two_class_training() -> gpd.GeoDataFrame:
    pts = [(c, r, "water") for c in (3, 8, 14) for r in (5, 15, 25, 35)]
    pts += [(c, r, "built") for c in (24, 30, 36) for r in (5, 15, 25, 35)]
    gdf = gpd.GeoDataFrame(
        {"kind": [p[2] for p in pts]}, geometry=[pixel_point(c, r) for c, r, _ in pts], crs=32647
    )
    return gdf.to_crs(4326)  # training in another CRS than the imagery


# --- models -----------------------------------------------------------------------------------


def test_make_classifier_by_alias_or_class_name_with_seed():
    rf = make_classifier("random_forest", seed=7)
    assert type(rf).__name__ == "RandomForestClassifier" and rf.random_state == 7
    hgb = make_classifier("HistGradientBoostingClassifier", seed=3, params={"max_iter": 10})
    assert hgb.random_state == 3 and hgb.max_iter == 10
    assert type(make_classifier("knn")).__name__ == "KNeighborsClassifier"


def test_unknown_model_or_parameter_is_named():
    with pytest.raises(InputError, match="unknown model 'forest'; use a scikit-learn"):
        make_classifier("forest")
    with pytest.raises(InputError, match="unknown parameter trees"):
        make_classifier("random_forest", params={"trees": 5})


# --- accuracy ---------------------------------------------------------------------------------


def test_accuracy_metrics_by_hand():
    # rows map, columns reference
    n = np.array([[45, 5], [10, 40]])
    m = accuracy_metrics(n, ["a", "b"])
    assert m["overall_accuracy"] == pytest.approx(0.85)
    # p_e = (50*55 + 50*45) / 100^2 = 0.5; kappa = (0.85 - 0.5) / 0.5
    assert m["kappa"] == pytest.approx(0.7)
    assert m["per_class"]["a"]["precision"] == pytest.approx(45 / 50)
    assert m["per_class"]["a"]["recall"] == pytest.approx(45 / 55)
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 * 0.9 * (45 / 55) / (0.9 + 45 / 55))
    assert m["per_class"]["b"]["support"] == 45


def test_confusion_matrix_rows_are_the_map():
    n = confusion_matrix(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    assert n.tolist() == [[1, 1], [0, 1]]


def test_area_adjusted_reproduces_olofsson_2014_example():
    """The worked example of Olofsson et al. (2014), section 5 (Table 8): 30 m pixels."""
    n = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
    pixels = [200_000, 150_000, 3_200_000, 6_450_000]
    a = area_adjusted(n, pixels, ["def", "gain", "forest", "nonforest"], pixel_area_ha=0.09)
    c = a["classes"]
    # published: 21,158 ± 6,158 ha; 11,686 ± 3,756; 285,770 ± 15,510; 581,386 ± 16,282
    for name, area, ci in [
        ("def", 21_158, 6_158),
        ("gain", 11_686, 3_756),
        ("forest", 285_770, 15_510),
        ("nonforest", 581_386, 16_282),
    ]:
        assert c[name]["estimated_area_ha"] == pytest.approx(area, abs=1)
        assert c[name]["ci95_area_ha"] == pytest.approx(ci, abs=1)
    assert c["def"]["users_accuracy"] == pytest.approx(0.88)
    assert c["def"]["users_accuracy_ci95"] == pytest.approx(0.07, abs=0.005)
    assert c["def"]["producers_accuracy"] == pytest.approx(0.75, abs=0.005)
    assert a["overall_accuracy"] == pytest.approx(0.95, abs=0.005)
    assert a["overall_accuracy_ci95"] == pytest.approx(0.02, abs=0.005)


def test_area_adjusted_lists_mapped_classes_never_sampled():
    a = area_adjusted(np.array([[5, 0], [0, 0]]), [10, 10], ["a", "b"], pixel_area_ha=1)
    assert a["unsampled_map_classes"] == ["b"]


# --- samples ----------------------------------------------------------------------------------


def test_points_in_another_crs_land_on_their_pixels(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    s = training_samples(two_class_training(), img, label_field="kind", block_m=100)
    assert len(s) == 24
    assert sorted(zip(s.cols.tolist(), s.rows.tolist(), strict=True))[:2] == [(3, 5), (3, 15)]
    water = s.X[s.labels == "water"]
    assert (water < 40).all() and (s.X[s.labels == "built"] >= 180).all()
    # groups are 100 m blocks: (3, 5) and (8, 5) share block (0, 0)
    g = dict(
        zip(zip(s.cols.tolist(), s.rows.tolist(), strict=True), s.groups.tolist(), strict=True)
    )
    assert g[(3, 5)] == g[(8, 5)] != g[(14, 5)]


def test_datum_realisation_of_the_training_crs_is_not_refused(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    gdf = two_class_training().set_crs("EPSG:9057", allow_override=True)  # WGS 84 (G1762)
    assert len(training_samples(gdf, img, label_field="kind")) == 24


def test_polygon_gives_its_pixels_capped_and_one_group(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    poly = shapely.box(X0 + 30, Y1 - 300, X0 + 130, Y1 - 100)  # cols 3-12, rows 10-29: 200 px
    gdf = gpd.GeoDataFrame({"kind": ["water"]}, geometry=[poly], crs=32647)
    full = training_samples(gdf, img, label_field="kind", max_pixels_per_feature=None, block_m=50)
    assert len(full) == 200 and len(set(full.groups)) == 1
    capped = training_samples(gdf, img, label_field="kind", max_pixels_per_feature=30, seed=1)
    assert len(capped) == 30
    again = training_samples(gdf, img, label_field="kind", max_pixels_per_feature=30, seed=1)
    assert (capped.rows == again.rows).all()


def test_samples_on_nodata_or_outside_are_dropped_and_counted(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    gdf = gpd.GeoDataFrame(
        {"kind": ["water", "water", "built"]},
        geometry=[pixel_point(0, 0), pixel_point(-5, 3), pixel_point(30, 30)],
        crs=32647,
    )
    s = training_samples(gdf, img, label_field="kind")
    assert len(s) == 1
    assert s.notes == (
        "1 training pixels outside the imagery were dropped",
        "1 training pixels on nodata were dropped",
    )


def test_lines_and_missing_label_field_are_refused(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    line = gpd.GeoDataFrame(
        {"kind": ["x"]}, geometry=[shapely.LineString([(X0, Y1 - 5), (X0 + 50, Y1 - 5)])], crs=32647
    )
    with pytest.raises(InputError, match="points or polygons, found LineString"):
        training_samples(line, img, label_field="kind")
    with pytest.raises(InputError, match="no label field 'class'; fields are: kind"):
        training_samples(line, img, label_field="class")


def test_label_targets_with_and_without_crosswalk():
    assert label_targets(["water", "urban"], None) == {"urban": "urban", "water": "water"}
    with pytest.raises(InputError, match="labels built, port have no zone; give --crosswalk"):
        label_targets(["built", "port", "water"], None)
    cw = load_crosswalk(DATA / "khlongtoei_crosswalk.yaml")
    assert label_targets(["built", "port"], cw) == {"built": "urban", "port": "industrial"}
    with pytest.raises(InputError, match="maps to built_up"):
        label_targets(["U405"], load_crosswalk("ldd"))


# --- cross-validation, prediction, model files --------------------------------------------------


def test_blocked_cv_never_shares_a_group_between_train_and_test(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    s = training_samples(two_class_training(), img, label_field="kind", block_m=100)
    pred, info = cross_validate(s, folds=3, params=FAST)  # asserts disjoint groups per fold
    assert info["folds"] == 3 and info["groups"] == 16  # 4 x 4 blocks of 100 m
    assert (pred == s.labels).all()  # the two classes are trivially separable


def test_too_few_groups_for_blocked_cv_is_explained(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    s = training_samples(two_class_training(), img, label_field="kind", block_m=10_000)
    with pytest.raises(InputError, match="at least 2 groups; the samples fall in 1 block"):
        cross_validate(s)


@pytest.mark.parametrize("texture_px", [0, 2])
def test_prediction_does_not_depend_on_the_chunk_size(tmp_path, texture_px):
    img = open_imagery([two_class_image(tmp_path)], texture_px=texture_px)
    s = training_samples(two_class_training(), img, label_field="kind")
    m = fit_model(
        s,
        {"water": "water", "built": "urban"},
        band_names=img.feature_names,
        params=FAST,
        texture_px=texture_px,
        n_bands=2,
    )
    whole = predict_zones(m, img, chunk_size=64).compute()
    assert (whole[:, 2:20] == 6).all() and (whole[:, 20:] == 4).all() and whole[0, 0] == 0
    assert (predict_zones(m, img, chunk_size=16).compute() == whole).all()
    assert (predict_zones(m, img, chunk_size=7).compute() == whole).all()


def test_texture_features_read_a_halo_so_blocks_agree(tmp_path):
    img = open_imagery([two_class_image(tmp_path)], texture_px=2)
    whole, valid = read_window(img, 0, 40, 0, 40)
    part, pvalid = read_window(img, 10, 17, 18, 25)
    assert whole.shape == (40, 40, 6)
    assert np.array_equal(whole[10:17, 18:25], part) and np.array_equal(valid[10:17, 18:25], pvalid)
    # the mean of band 1 over the 5x5 window at (5, 5) is the mean of those 25 pixels
    raw = rasterio.open(img.paths[0]).read(1).astype(float)
    assert whole[5, 5, 2] == pytest.approx(raw[3:8, 3:8].mean(), rel=1e-6)


def test_saved_model_maps_another_image(tmp_path):
    img = open_imagery([two_class_image(tmp_path)], texture_px=1)
    s = training_samples(two_class_training(), img, label_field="kind")
    m = fit_model(
        s,
        {"water": "water", "built": "urban"},
        band_names=img.feature_names,
        params=FAST,
        texture_px=1,
        n_bands=2,
    )
    path = save_model(m, tmp_path / "m.joblib")
    other = open_imagery([two_class_image(tmp_path, "other.tif", x0=X0 + 10_000)])
    again = load_model(path)
    assert again.texture_px == 1
    assert (predict_zones(again, other).compute() == predict_zones(m, img).compute()).all()
    (tmp_path / "junk.joblib").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not an ecoplan model file"):
        load_model(tmp_path / "junk.joblib")


def test_model_on_imagery_with_other_band_count_is_refused(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    s = training_samples(two_class_training(), img, label_field="kind")
    m = fit_model(
        s,
        {"water": "water", "built": "urban"},
        band_names=img.feature_names,
        params=FAST,
        n_bands=2,
    )
    three = write_image(tmp_path / "three.tif", np.full((3, 5, 5), 9))
    with pytest.raises(InputError, match="trained on 2 bands"):
        predict_zones(m, open_imagery([three]))


# --- the real Sentinel-2 sample, through the CLI --------------------------------------------------


@pytest.fixture(scope="module")
def khlongtoei_training(tmp_path_factory) -> Path:
    """Hand-labelled points (EPSG:4326) plus OSM water polygons, in one GeoPackage."""
    df = pd.read_csv(DATA / "khlongtoei_labels.csv")
    pts = gpd.GeoDataFrame(df[["label"]], geometry=gpd.points_from_xy(df.lon, df.lat), crs=4326)
    water = gpd.read_file(DATA / "khlongtoei_water.geojson")[["label", "geometry"]]
    path = tmp_path_factory.mktemp("kt") / "training.gpkg"
    gpd.GeoDataFrame(pd.concat([pts, water], ignore_index=True), crs=4326).to_file(path)
    return path


def run_cli(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result


def test_sentinel2_sample_end_to_end_through_the_cli(tmp_path, khlongtoei_training):
    out, report = tmp_path / "zones.tif", tmp_path / "acc.json"
    args = [
        "classify",
        "ml",
        "--imagery",
        str(DATA / "khlongtoei_s2_rgb.tif"),
        "--training",
        str(khlongtoei_training),
        "--label-field",
        "label",
        "--crosswalk",
        str(DATA / "khlongtoei_crosswalk.yaml"),
        "--out",
        str(out),
        "--report",
        str(report),
        "--seed",
        "0",
        "--max-pixels-per-feature",
        "30",
        "--param",
        "n_estimators=50",
        "--save-model",
        str(tmp_path / "m.joblib"),
    ]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    acc = json.loads(report.read_text())
    for key in ("overall_accuracy", "kappa", "per_class", "confusion_matrix", "area_estimates"):
        assert key in acc
    assert set(acc["per_class"]) == {"built", "port", "trees", "water"}
    assert acc["n_samples"] == sum(map(sum, acc["confusion_matrix"]["counts"]))
    assert acc["cross_validation"]["groups"] >= 10
    # honest but not random: water is recognised, and the classes beat chance agreement
    assert acc["per_class"]["water"]["f1"] > 0.7
    assert acc["kappa"] > 0.15
    areas = acc["area_estimates"]["classes"]
    assert set(areas) == {"forest", "urban", "industrial", "water"}
    assert acc["area_estimates"]["total_area_ha"] == pytest.approx(
        sum(a["map_area_ha"] for a in areas.values())
    )
    assert "Area estimates (Olofsson et al. 2014)" in report.with_suffix(".txt").read_text()
    with rasterio.open(out) as src:
        z = src.read(1)
        image = rasterio.open(DATA / "khlongtoei_s2_rgb.tif").read()
    assert ((z == 0) == (image == 0).any(axis=0)).all()  # nodata exactly where a band is nodata
    # the Chao Phraya: pixels well inside the river polygon are mapped as water
    river = gpd.read_file(DATA / "khlongtoei_water.geojson")
    river = river[river["class"] == "river"].to_crs(32647).buffer(-30)
    inside = rasterio.features.geometry_mask(
        [g for g in river if not g.is_empty], z.shape, src.transform, invert=True
    )
    assert (z[inside & (z > 0)] == 6).mean() > 0.9
    # the same command again gives the same map (seeded); --overwrite is needed
    assert run_cli(args).exit_code == 2
    again = run_cli([*args, "--overwrite"])
    assert again.exit_code == 0
    with rasterio.open(out) as src:
        assert (src.read(1) == z).all()


def test_cli_errors_are_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "classify",
            "ml",
            "--imagery",
            str(tmp_path / "none.tif"),
            "--out",
            str(tmp_path / "z.tif"),
            "--training",
            str(tmp_path / "t.gpkg"),
            "--label-field",
            "x",
        ],
    )
    assert result.exit_code == 2
    assert "error: " in result.output and "not found" in result.output


def test_run_ml_python_api_with_zone_name_labels(tmp_path):
    res = run_ml(
        [two_class_image(tmp_path)],
        training=two_class_training().replace({"kind": {"built": "urban"}}),
        label_field="kind",
        out=tmp_path / "z.tif",
        block_m=100,
        folds=3,
        params=FAST,
    )
    assert res.report["overall_accuracy"] == 1.0
    assert res.report["area_estimates"]["classes"]["water"]["map_area_ha"] == pytest.approx(
        (40 * 18 + 38 * 2) * 0.01
    )


def test_second_image_on_another_grid_is_resampled_onto_the_first(tmp_path):
    first = two_class_image(tmp_path)
    # 20 m pixels, 400 m square, constant 77 with its own nodata stripe on the right
    b = np.full((1, 20, 20), 77)
    b[:, :, 18:] = 0
    with rasterio.open(
        tmp_path / "second.tif",
        "w",
        driver="GTiff",
        width=20,
        height=20,
        count=1,
        dtype="uint8",
        crs="EPSG:32647",
        transform=Affine(20, 0, X0, 0, -20, Y1),
        nodata=0,
    ) as dst:
        dst.write(b.astype(np.uint8))
    img = open_imagery([first, tmp_path / "second.tif"])
    assert img.band_names == ("img:band1", "img:band2", "second:band1")
    feats, valid = read_window(img, 0, 40, 0, 40)
    assert feats.shape == (40, 40, 3)
    assert (feats[5:30, 5:30, 2] == 77).all()
    assert not valid[:, 37:].any()  # nodata of the second image makes the pixel unusable


def test_numeric_labels_stored_as_floats_read_as_integers(tmp_path):
    img = open_imagery([two_class_image(tmp_path)])
    gdf = two_class_training()
    gdf["code"] = np.where(gdf["kind"] == "water", 1.0, 2.0)
    s = training_samples(gdf, img, label_field="code")
    assert set(s.labels) == {"1", "2"}
