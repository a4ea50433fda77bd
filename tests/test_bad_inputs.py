"""The catalogue of bad and awkward inputs, run through ``ecoplan run`` (click's CliRunner).

Each case is one change to the tiny synthetic region of ``conftest.py`` and its expected
behaviour, either

- **refused**: exit code 2, exactly one ``error: …`` line on stderr that names the file, layer,
  field or YAML key (further lines only as the indented continuation of a message listing
  several problems), no traceback, and nothing written in the output folder; or
- **handled**: exit code 0 and a check of how (a warning, a value in the outputs, …).
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner, Result
from conftest import CRS_UTM, PIXEL_M, SIZE, X0, Y0, SynthRegion, landcover_codes
from rasterio.warp import transform_bounds

from ecoplan.cli.main import cli


@dataclass
class Outcome:
    result: Result
    out: Path

    @property
    def stderr(self) -> str:
        return self.result.stderr

    def layer(self, name: str) -> gpd.GeoDataFrame:
        return pyogrio.read_dataframe(self.out / "tiny.gpkg", layer=name)

    def metadata(self) -> dict[str, str]:
        md = self.layer("run_metadata")
        return dict(zip(md["key"], md["value"], strict=False))

    def region_share(self, zone: str) -> float:
        p = self.layer("proportions")
        row = p[(p.level == "region") & (p.zone_en == zone)]
        return float(row.share.iloc[0])


def run_cli(region_yaml: Path, out: Path, *extra: str) -> Outcome:
    result = CliRunner().invoke(cli, ["run", str(region_yaml), "--out", str(out), "-q", *extra])
    return Outcome(result, out)


def assert_refused(outcome: Outcome, *names: str) -> str:
    """Exit 2, one ``error:`` line naming every one of ``names``, no traceback, no output."""
    r = outcome.result
    assert r.exit_code == 2, f"exit {r.exit_code}\n{r.stderr}\n{r.exception!r}"
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    first = errors[0]
    # lines after the error line are only its indented continuation (several YAML problems)
    after = lines[lines.index(first) + 1 :]
    assert all(line.startswith("  ") for line in after), r.stderr
    for name in names:
        assert name in first, f"{name!r} not in {first!r}"
    if outcome.out.exists():
        left = sorted(p.name for p in outcome.out.iterdir())
        assert left == [], f"files left in the output folder: {left}"
    return first


def assert_handled(outcome: Outcome) -> None:
    r = outcome.result
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stderr}\n{r.exception!r}"
    assert (outcome.out / "tiny.gpkg").is_file()
    assert (outcome.out / "tiny_zones.tif").is_file()


def grid_slice(zones_tif, r0: int, r1: int, c0: int, c1: int) -> tuple[slice, slice]:
    """Rows/columns of the synthetic land cover -> those of the zone raster (an open dataset).

    The working grid covers the boundary, which starts about 200 m inside the land cover.
    """
    dc = round((zones_tif.transform.c - X0) / PIXEL_M)
    dr = round((Y0 - zones_tif.transform.f) / PIXEL_M)
    return slice(r0 - dr, r1 - dr), slice(c0 - dc, c1 - dc)


# -- builders of bad inputs ---------------------------------------------------------------------


def _region_with(s: SynthRegion, **changes) -> Path:
    """The default region with some keys of region.yaml changed (nested dicts merged)."""
    s.build()
    cfg = s.config()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        elif value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return s.write_yaml(cfg)


def _landcover_file(s: SynthRegion, name: str, content: bytes | None = None) -> Path:
    s.build()
    if content is not None:
        (s.data / name).write_bytes(content)
    return _region_with(s, landcover={"path": f"data/{name}"})


def truncated_tiff(s: SynthRegion) -> Path:
    """A tiled GeoTIFF cut at half its bytes: it opens, but half its tiles are missing."""
    s.build()
    full = s.write_raster("full.tif", tiled=True)
    data = full.read_bytes()
    (s.data / "half.tif").write_bytes(data[: len(data) // 2])
    return _region_with(s, landcover={"path": "data/half.tif"})


def absurd_tiff_bytes(width: int = 10**6, height: int = 10**6) -> bytes:
    """A classic little-endian GeoTIFF header claiming ``width`` x ``height`` uint8 pixels.

    Georeferenced (EPSG:32647) so that only its size is wrong; its one strip holds 16 bytes.
    """
    entries = []  # (tag, type, count, value-or-offset bytes)
    SHORT, LONG, DOUBLE = 3, 4, 12
    geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32647]
    scale = [10.0, 10.0, 0.0]
    tie = [0.0, 0.0, 0.0, X0, Y0, 0.0]
    n_entries = 13
    ifd_size = 2 + n_entries * 12 + 4
    extra_at = 8 + ifd_size
    extra = b""

    def put_extra(blob: bytes) -> int:
        nonlocal extra
        off = extra_at + len(extra)
        extra += blob
        return off

    scale_off = put_extra(struct.pack("<3d", *scale))
    tie_off = put_extra(struct.pack("<6d", *tie))
    geo_off = put_extra(struct.pack(f"<{len(geokeys)}H", *geokeys))
    data_off = put_extra(b"\x0a" * 16)
    entries = [
        (256, LONG, 1, struct.pack("<I", width)),
        (257, LONG, 1, struct.pack("<I", height)),
        (258, SHORT, 1, struct.pack("<HH", 8, 0)),
        (259, SHORT, 1, struct.pack("<HH", 1, 0)),
        (262, SHORT, 1, struct.pack("<HH", 1, 0)),
        (273, LONG, 1, struct.pack("<I", data_off)),
        (277, SHORT, 1, struct.pack("<HH", 1, 0)),
        (278, LONG, 1, struct.pack("<I", height)),
        (279, LONG, 1, struct.pack("<I", 16)),
        (284, SHORT, 1, struct.pack("<HH", 1, 0)),
        (33550, DOUBLE, 3, struct.pack("<I", scale_off)),
        (33922, DOUBLE, 6, struct.pack("<I", tie_off)),
        (34735, SHORT, len(geokeys), struct.pack("<I", geo_off)),
    ]
    assert len(entries) == n_entries
    ifd = struct.pack("<H", n_entries)
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + value
    ifd += struct.pack("<I", 0)
    return b"II" + struct.pack("<HI", 42, 8) + ifd + extra


def lonlat_raster(s: SynthRegion) -> Path:
    """The land cover on a lon/lat (EPSG:4326) grid covering the same ground."""
    s.build()
    left, bottom, right, top = transform_bounds(
        CRS_UTM, "EPSG:4326", X0, Y0 - SIZE * PIXEL_M, X0 + SIZE * PIXEL_M, Y0
    )
    t = Affine((right - left) / SIZE, 0, left, 0, -(top - bottom) / SIZE, top)
    s.write_raster("lonlat.tif", crs="EPSG:4326", transform=t)
    return _region_with(s, landcover={"path": "data/lonlat.tif"})


def finer_raster(s: SynthRegion) -> Path:
    """A 10 m land cover (each 20 m cell split in four) computed on a 20 m working grid."""
    s.build()
    codes = np.kron(landcover_codes(), np.ones((2, 2), dtype=np.uint8))
    s.write_raster("fine.tif", codes=codes, transform=Affine(10, 0, X0, 0, -10, Y0))
    return _region_with(s, landcover={"path": "data/fine.tif"}, pixel_size_m=20)


def no_nodata_raster(s: SynthRegion) -> Path:
    """No nodata value in the file; a patch of 0 (WorldCover's 'no data' code) inside a unit."""
    s.build()
    codes = landcover_codes()
    codes[60:80, 20:40] = 0
    s.write_raster("no_nodata.tif", codes=codes, nodata=None)
    return _region_with(s, landcover={"path": "data/no_nodata.tif"})


def dem_other_grid(s: SynthRegion) -> Path:
    """A DEM on another grid (lon/lat, 0.001°, float) next to the land cover."""
    s.build()
    dem = np.linspace(300, 1500, 80 * 60, dtype=np.float32).reshape(60, 80)
    t = Affine(0.001, 0, 98.99, 0, -0.001, 18.81)
    s.write_raster("dem.tif", codes=dem, crs="EPSG:4326", transform=t, dtype="float32")
    cfg = s.config()
    cfg["layers"]["dem"] = {"path": "data/dem.tif"}
    return s.write_yaml(cfg)


def _boundary(s: SynthRegion, gdf: gpd.GeoDataFrame, **kw) -> Path:
    s.build()
    path = s.data / "boundary.gpkg"
    path.unlink()
    s.write_vector(gdf, "boundary.gpkg", layer="units", **kw)
    return s.write_yaml(s.config())


def boundary_other_crs(s: SynthRegion) -> Path:
    return _boundary(s, SynthRegion(s.root).boundary_frame(crs="EPSG:3857"))


def boundary_no_crs(s: SynthRegion) -> Path:
    gdf = s.boundary_frame()
    return _boundary(s, gdf.set_crs(None, allow_override=True))


def boundary_empty(s: SynthRegion) -> Path:
    return _boundary(s, s.boundary_frame().iloc[0:0])


def boundary_metres_as_degrees(s: SynthRegion) -> Path:
    """UTM coordinates in a layer that claims EPSG:4326 (a very common labelling mistake)."""
    gdf = s.boundary_frame(crs=CRS_UTM).set_crs("EPSG:4326", allow_override=True)
    return _boundary(s, gdf)


def _notched(poly) -> shapely.Polygon:
    """A rectangle whose ring runs back over its first edge: invalid (self-intersection)."""
    left, bottom, right, top = poly.bounds
    return shapely.Polygon(
        [
            (left, bottom),
            (right, bottom),
            (right, top),
            (left, top),
            (left, bottom + 0.0002),
            (left + 0.0002, bottom),
        ]
    )


def boundary_invalid(s: SynthRegion) -> Path:
    gdf = s.boundary_frame()
    gdf["geometry"] = [_notched(g) for g in gdf.geometry]
    assert not gdf.geometry.is_valid.any()
    return _boundary(s, gdf)


def boundary_mixed(s: SynthRegion) -> Path:
    """Two polygons plus a point and a line in the same layer."""
    gdf = s.boundary_frame()
    extra = gpd.GeoDataFrame(
        {"unit": ["pt", "ln"], "name_th": ["จุด", "เส้น"]},
        geometry=[shapely.Point(99.01, 18.79), shapely.LineString([(99.0, 18.79), (99.02, 18.8)])],
        crs="EPSG:4326",
    )
    mixed = gpd.GeoDataFrame(
        gpd.pd.concat([gdf, extra], ignore_index=True), geometry="geometry", crs="EPSG:4326"
    )
    return _boundary(s, mixed, geometry_type="Unknown")


def boundary_far_away(s: SynthRegion) -> Path:
    """The units moved 1° east: they no longer overlap the land cover."""
    gdf = s.boundary_frame()
    gdf["geometry"] = gdf.geometry.translate(xoff=1.0)
    return _boundary(s, gdf)


def boundary_only_lines(s: SynthRegion) -> Path:
    gdf = s.boundary_frame()
    gdf["geometry"] = gdf.geometry.boundary
    return _boundary(s, gdf)


def _rivers(s: SynthRegion, gdf: gpd.GeoDataFrame) -> Path:
    s.build()
    (s.data / "rivers.gpkg").unlink()
    s.write_vector(gdf, "rivers.gpkg", layer="rivers")
    return s.write_yaml(s.config())


def rivers_empty(s: SynthRegion) -> Path:
    return _rivers(s, s.rivers_frame().iloc[0:0])


def rivers_other_crs(s: SynthRegion) -> Path:
    return _rivers(s, s.rivers_frame().to_crs("EPSG:3857"))


def rivers_no_crs(s: SynthRegion) -> Path:
    return _rivers(s, s.rivers_frame().set_crs(None, allow_override=True))


def unknown_codes(s: SynthRegion) -> Path:
    codes = landcover_codes()
    codes[100:110, 100:110] = 33  # not a WorldCover class
    codes[10:12, 10:12] = 250
    s.build()
    s.write_raster("landcover.tif", codes=codes)
    return s.write_yaml(s.config())


def all_nodata(s: SynthRegion) -> Path:
    s.build()
    s.write_raster("landcover.tif", codes=np.zeros((SIZE, SIZE), np.uint8), nodata=0)
    return s.write_yaml(s.config())


def float_raster(s: SynthRegion) -> Path:
    s.build()
    s.write_raster("landcover.tif", codes=landcover_codes().astype(np.float32), dtype="float32")
    return s.write_yaml(s.config())


def _rules(s: SynthRegion, text: str) -> Path:
    s.build()
    (s.root / "rules.yaml").write_text(text, "utf-8")
    return _region_with(s, rules="rules.yaml")


def _yaml_text(s: SynthRegion, text: str, encoding: str = "utf-8") -> Path:
    s.build()
    path = s.root / "region.yaml"
    path.write_bytes(text.encode(encoding))
    return path


BUFFER = "buffers:\n  - {id: wet, name_en: Wet, source: {zones: [water]}, distance_m: %s}\n"


# -- the catalogue: refused ---------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    id: str
    build: Callable[[SynthRegion], Path]
    names: tuple[str, ...]  # what the error line must contain (file, layer, field, YAML key)


REFUSED = [
    Refused(
        "landcover-missing", lambda s: _landcover_file(s, "nope.tif"), ("nope.tif", "not found")
    ),
    Refused(
        "landcover-empty", lambda s: _landcover_file(s, "empty.tif", b""), ("empty.tif", "empty")
    ),
    Refused(
        "landcover-not-a-raster",
        lambda s: _landcover_file(s, "notes.tif", "ข้อมูลไม่ใช่ภาพ\n".encode()),
        ("notes.tif", "not a readable raster"),
    ),
    Refused(
        "landcover-is-a-vector",
        lambda s: _region_with(s, landcover={"path": "data/boundary.gpkg"}),
        ("boundary.gpkg", "not a readable raster"),
    ),
    Refused(
        "landcover-is-a-folder",
        lambda s: _region_with(s, landcover={"path": "data"}),
        ("data", "folder"),
    ),
    Refused("landcover-truncated", truncated_tiff, ("half.tif", "incomplete")),
    Refused(
        "landcover-absurd-size-header",
        lambda s: _landcover_file(s, "huge.tif", absurd_tiff_bytes()),
        ("huge.tif", "1,000,000 x 1,000,000"),
    ),
    Refused(
        "landcover-no-crs",
        lambda s: (s.build(), s.write_raster("landcover.tif", crs=None), s.root / "region.yaml")[2],
        ("landcover.tif", "no CRS"),
    ),
    Refused(
        "landcover-metres-labelled-degrees",
        lambda s: (
            s.build(),
            s.write_raster("landcover.tif", crs="EPSG:4326"),
            s.root / "region.yaml",
        )[2],
        ("landcover.tif", "not degrees"),
    ),
    Refused("landcover-float", float_raster, ("landcover.tif", "integer class codes")),
    Refused("landcover-all-nodata", all_nodata, ("landcover.tif", "no land-cover data")),
    Refused("landcover-unknown-codes", unknown_codes, ("landcover.tif", "33", "250", "worldcover")),
    Refused(
        "boundary-missing",
        lambda s: _region_with(s, boundary={"path": "data/nowhere.gpkg"}),
        ("nowhere.gpkg", "not found"),
    ),
    Refused(
        "boundary-is-a-raster",
        lambda s: _region_with(s, boundary={"path": "data/landcover.tif"}),
        ("landcover.tif", "not a readable vector"),
    ),
    Refused(
        "boundary-unknown-layer",
        lambda s: _region_with(s, boundary={"layer": "provinces"}),
        ("boundary.gpkg", "'provinces'", "units"),
    ),
    Refused(
        "boundary-where-matches-nothing",
        lambda s: _region_with(s, boundary={"where": "unit = 'north'"}),
        ("boundary.gpkg", "'units'", "no features", "unit = 'north'"),
    ),
    Refused(
        "boundary-where-bad-syntax",
        lambda s: _region_with(s, boundary={"where": "unit === north"}),
        ("boundary.gpkg", "where=", "unit === north"),
    ),
    Refused("boundary-no-crs", boundary_no_crs, ("boundary.gpkg", "'units'", "no CRS")),
    Refused("boundary-empty-layer", boundary_empty, ("boundary.gpkg", "'units'", "no features")),
    Refused(
        "boundary-metres-labelled-degrees",
        boundary_metres_as_degrees,
        ("boundary.gpkg", "not degrees"),
    ),
    Refused("boundary-only-lines", boundary_only_lines, ("boundary.gpkg", "no polygons")),
    Refused("boundary-off-the-raster", boundary_far_away, ("boundary.gpkg", "does not overlap")),
    Refused(
        "unit-field-missing",
        lambda s: _region_with(s, boundary={"unit_field": "ADM1_PCODE"}),
        ("boundary.gpkg", "'ADM1_PCODE'", "unit_field", "unit, name_th"),
    ),
    Refused(
        "rivers-missing",
        lambda s: (s.build(), (s.data / "rivers.gpkg").unlink(), s.root / "region.yaml")[2],
        ("rivers.gpkg", "not found"),
    ),
    Refused("rivers-no-crs", rivers_no_crs, ("rivers.gpkg", "'rivers'", "no CRS")),
    Refused(
        "region-yaml-missing", lambda s: s.root / "nothing.yaml", ("nothing.yaml", "not found")
    ),
    Refused("region-yaml-empty", lambda s: _yaml_text(s, ""), ("region.yaml", "mapping")),
    Refused(
        "region-yaml-syntax",
        lambda s: _yaml_text(s, "region: {id: tiny\nboundary: [\n"),
        ("region.yaml", "invalid YAML", "line"),
    ),
    Refused(
        "region-yaml-tis620",
        lambda s: _yaml_text(s, "region:\n  id: tiny\n  name_th: ภาคเหนือ\n", "cp874"),
        ("region.yaml", "not UTF-8"),
    ),
    Refused(
        "region-yaml-duplicate-key",
        lambda s: _yaml_text(
            s,
            "region: {id: tiny}\nboundary: {path: data/boundary.gpkg}\n"
            "landcover: {path: data/landcover.tif, crosswalk: worldcover}\n"
            "boundary: {path: data/other.gpkg}\n",
        ),
        ("region.yaml", "'boundary'", "twice"),
    ),
    Refused(
        "region-unknown-key",
        lambda s: _region_with(s, landcover={"crosswalks": "worldcover"}),
        ("region.yaml", "landcover.crosswalks", "unknown key"),
    ),
    Refused(
        "region-missing-key",
        lambda s: _region_with(s, landcover=None),
        ("region.yaml", "landcover", "required"),
    ),
    Refused(
        "region-wrong-type",
        lambda s: _region_with(s, pixel_size_m="thirty"),
        ("region.yaml", "pixel_size_m", "'thirty'"),
    ),
    Refused(
        "region-negative-pixel-size",
        lambda s: _region_with(s, pixel_size_m=-30),
        ("region.yaml", "pixel_size_m", "> 0"),
    ),
    Refused(
        "region-id-thai",
        lambda s: _region_with(s, region={"id": "ภาคเหนือ"}),
        ("region.yaml", "region.id", "[a-z0-9_]"),
    ),
    Refused(
        "region-several-problems",
        lambda s: _region_with(s, pixel_size_m="thirty", colour="green", landcover={"x": 1}),
        ("region.yaml", "more"),
    ),
    Refused(
        "region-unknown-role",
        lambda s: _region_with(s, layers={"river": {"path": "data/rivers.gpkg"}}),
        ("region.yaml", "layers", "'river'", "rivers"),
    ),
    Refused(
        "region-crs-geographic",
        lambda s: _region_with(s, crs="EPSG:4326"),
        ("region.yaml", "crs", "geographic"),
    ),
    Refused(
        "region-crs-garbage",
        lambda s: _region_with(s, crs="UTM 47"),
        ("region.yaml", "crs", "'UTM 47'"),
    ),
    Refused(
        "crosswalk-unknown-name",
        lambda s: _region_with(s, landcover={"crosswalk": "worldcovr"}),
        ("region.yaml", "landcover.crosswalk", "'worldcovr'", "worldcover"),
    ),
    Refused(
        "rules-negative-distance",
        lambda s: _rules(s, BUFFER % "-5"),
        ("rules.yaml", "buffers[0].distance_m", "> 0", "-5"),
    ),
    Refused(
        "rules-distance-wrong-type",
        lambda s: _rules(s, BUFFER % "thirty"),
        ("rules.yaml", "buffers[0].distance_m", "'thirty'"),
    ),
    Refused(
        "rules-unknown-key",
        lambda s: _rules(s, "target:\n  - {zone: forest, min_share: 0.4}\n"),
        ("rules.yaml", "target", "unknown key"),
    ),
    Refused(
        "rules-shares-above-100",
        lambda s: _rules(
            s,
            "targets:\n  - {zone: forest, min_share: 0.7}\n"
            "  - {zone: agriculture, min_share: 0.5}\n",
        ),
        ("rules.yaml", "targets", "120 %", "100 %"),
    ),
    Refused(
        "rules-share-as-percent",
        lambda s: _rules(s, "targets:\n  - {zone: forest, min_share: 40}\n"),
        ("rules.yaml", "targets[0].min_share", "<= 1"),
    ),
    Refused(
        "rules-unknown-zone",
        lambda s: _rules(s, "targets:\n  - {zone: forests, min_share: 0.4}\n"),
        ("rules.yaml", "targets[0].zone", "'forests'"),
    ),
    Refused(
        "rules-not-a-mapping",
        lambda s: _rules(s, "- forest\n- urban\n"),
        ("rules.yaml", "mapping"),
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_bad_input_is_refused_with_one_error_line(case: Refused, synth: SynthRegion, tmp_path):
    region_yaml = case.build(synth)
    assert_refused(run_cli(region_yaml, tmp_path / "out"), *case.names)


def test_several_yaml_problems_are_listed_after_one_error_line(synth, tmp_path):
    region_yaml = _region_with(synth, pixel_size_m="thirty", colour="green")
    first = assert_refused(run_cli(region_yaml, tmp_path / "out"), "region.yaml")
    stderr = run_cli(region_yaml, tmp_path / "out").stderr
    assert "(and 1 more problem below)" in first
    assert "colour: unknown key" in stderr and "pixel_size_m" in stderr


def test_absurd_header_is_refused_before_reading_pixels(synth, tmp_path, monkeypatch):
    """The size check comes from the header alone: no pixel window is ever read."""
    region_yaml = _landcover_file(synth, "huge.tif", absurd_tiff_bytes())

    def no_read(*a, **k):  # pragma: no cover - must not be called
        raise AssertionError("pixels were read")

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", no_read)
    assert_refused(run_cli(region_yaml, tmp_path / "out"), "huge.tif", "damaged")


# -- the catalogue: handled ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Outcome:
    """A run of the unchanged synthetic region, to compare handled cases with."""
    root = tmp_path_factory.mktemp("reference")
    region_yaml = SynthRegion(root / "region").build()
    outcome = run_cli(region_yaml, root / "out")
    assert_handled(outcome)
    return outcome


def test_lonlat_raster_is_reprojected_to_utm(synth, tmp_path, reference):
    outcome = run_cli(lonlat_raster(synth), tmp_path / "out")
    assert_handled(outcome)
    md = outcome.metadata()
    assert md["crs"] == "EPSG:32647"
    assert 19.5 < float(md["pixel_size_m"]) < 21.5  # 0.00019° of longitude at 18.8° N
    assert outcome.region_share("forest") == pytest.approx(
        reference.region_share("forest"), abs=0.02
    )


def test_raster_on_a_finer_grid_is_resampled_to_the_working_grid(synth, tmp_path, reference):
    outcome = run_cli(finer_raster(synth), tmp_path / "out")
    assert_handled(outcome)
    assert outcome.metadata()["pixel_size_m"] == "20"
    with (
        rasterio.open(outcome.out / "tiny_zones.tif") as a,
        rasterio.open(reference.out / "tiny_zones.tif") as b,
    ):
        assert a.shape == b.shape
        assert np.mean(a.read(1) == b.read(1)) > 0.99


def test_raster_without_nodata_uses_the_crosswalk_nodata_codes(synth, tmp_path, reference):
    outcome = run_cli(no_nodata_raster(synth), tmp_path / "out")
    assert_handled(outcome)
    with rasterio.open(outcome.out / "tiny_zones.tif") as src:
        zones = src.read(1)[grid_slice(src, 60, 80, 20, 40)]
    assert (
        zones.shape == (20, 20) and (zones == 0).all()
    )  # code 0 is 'no data' in the WorldCover crosswalk
    p = outcome.layer("proportions")
    q = reference.layer("proportions")
    forest = (p.level == "region") & (p.zone_en == "forest")
    # 20 x 20 cells of 20 m = 16 ha on the map (ground areas differ by the UTM scale factor)
    assert q.area_ha[forest].iloc[0] - p.area_ha[forest].iloc[0] == pytest.approx(16.0, rel=2e-3)


def test_dem_on_another_grid_does_not_disturb_the_run(synth, tmp_path, reference):
    outcome = run_cli(dem_other_grid(synth), tmp_path / "out")
    assert_handled(outcome)
    assert outcome.metadata()["input:dem"] == "dem.tif"
    assert outcome.region_share("forest") == reference.region_share("forest")


def test_boundary_in_web_mercator_is_reprojected(synth, tmp_path, reference):
    outcome = run_cli(boundary_other_crs(synth), tmp_path / "out")
    assert_handled(outcome)
    assert outcome.metadata()["crs"] == "EPSG:32647"
    assert outcome.region_share("forest") == pytest.approx(
        reference.region_share("forest"), abs=0.005
    )


def test_rivers_in_another_crs_give_the_same_buffer(synth, tmp_path, reference):
    outcome = run_cli(rivers_other_crs(synth), tmp_path / "out")
    assert_handled(outcome)
    a = outcome.layer("buffer_zones").set_index("rule_id").area_ha
    b = reference.layer("buffer_zones").set_index("rule_id").area_ha
    assert a["riparian"] == pytest.approx(b["riparian"], rel=0.01)


def test_empty_rivers_layer_skips_its_buffer_with_a_warning(synth, tmp_path):
    outcome = run_cli(rivers_empty(synth), tmp_path / "out")
    assert_handled(outcome)
    assert "riparian" not in set(outcome.layer("buffer_zones").rule_id)
    warnings = [
        v for k, v in outcome.layer("run_metadata")[["key", "value"]].values if k == "warning"
    ]
    assert any("riparian" in w and "no features" in w for w in warnings)


def test_invalid_boundary_geometries_are_repaired_and_counted(synth, tmp_path, reference):
    outcome = run_cli(boundary_invalid(synth), tmp_path / "out")
    assert_handled(outcome)
    assert "repaired 2 invalid geometries" in outcome.stderr
    assert "Self-intersection" in outcome.stderr or "Ring" in outcome.stderr
    a = outcome.layer("proportions")
    b = reference.layer("proportions")
    total = lambda p: p[p.level == "region"].area_ha.sum()  # noqa: E731
    assert total(a) == pytest.approx(total(b), rel=0.01)


def test_mixed_geometry_boundary_keeps_the_polygons(synth, tmp_path, reference):
    outcome = run_cli(boundary_mixed(synth), tmp_path / "out")
    assert_handled(outcome)
    assert "ignored 2 LineString/Point features of the boundary" in outcome.stderr
    units = set(outcome.layer("proportions").unit_id)
    assert units == {"west", "east", "tiny"}
    assert outcome.region_share("forest") == reference.region_share("forest")


def test_boundary_with_several_layers_and_no_layer_name_reads_the_first(synth, tmp_path):
    synth.build()
    path = synth.data / "boundary.gpkg"
    synth.write_vector(synth.rivers_frame(), "boundary.gpkg", layer="zz_rivers")
    cfg = synth.config()
    del cfg["boundary"]["layer"]
    outcome = run_cli(synth.write_yaml(cfg), tmp_path / "out")
    assert_handled(outcome)
    assert pyogrio.list_layers(path)[0, 0] == "units"
    assert "2 layers, reading the first (units)" in outcome.stderr


def test_unmet_targets_are_reported_not_relaxed(synth, tmp_path):
    region_yaml = _rules(synth, "targets:\n  - {zone: forest, min_share: 0.9}\n")
    outcome = run_cli(region_yaml, tmp_path / "out", "--json")
    # --json and -q together: --json prints the summary
    assert_handled(outcome)
    p = outcome.layer("proportions")
    forest = p[(p.level == "region") & (p.zone_en == "forest")].iloc[0]
    assert forest.target_min == 0.9
    assert forest.share < 0.9
    assert forest.status == "below"
    assert "forest" in outcome.result.stdout and "below" in outcome.result.stdout


def test_unknown_codes_pass_when_the_crosswalk_maps_them_to_other(synth, tmp_path):
    region_yaml = unknown_codes(synth)
    cw = (Path(__file__).parents[1] / "zoning_rules/crosswalks/worldcover.yaml").read_text("utf-8")
    (synth.root / "cw.yaml").write_text(
        cw.replace("on_unmapped: error", "on_unmapped: other").replace(
            "name: worldcover", "name: worldcover_lenient"
        ),
        "utf-8",
    )
    region_yaml = _region_with(synth, landcover={"crosswalk": "cw.yaml"})
    codes = landcover_codes()
    codes[100:110, 100:110] = 33
    synth.write_raster("landcover.tif", codes=codes)
    outcome = run_cli(region_yaml, tmp_path / "out")
    assert_handled(outcome)
    with rasterio.open(outcome.out / "tiny_zones.tif") as src:
        assert (src.read(1)[grid_slice(src, 100, 110, 100, 110)] == 7).all()  # other


def test_thai_paths_layer_names_and_field_values(tmp_path, reference):
    s = SynthRegion(tmp_path / "ผังภูมินิเวศ ภาคเหนือ")
    s.build()
    gdf = s.boundary_frame().rename(columns={"name_th": "ชื่อหน่วย"})
    (s.data / "boundary.gpkg").unlink()
    s.write_vector(gdf, "เขต.gpkg", layer="หน่วยพื้นที่")
    cfg = s.config()
    cfg["boundary"] = {"path": "data/เขต.gpkg", "layer": "หน่วยพื้นที่", "unit_field": "ชื่อหน่วย"}
    cfg["boundary"]["where"] = "\"ชื่อหน่วย\" IN ('ตะวันตก', 'ตะวันออก')"
    outcome = run_cli(s.write_yaml(cfg, "ภูมิภาค.yaml"), tmp_path / "ผลลัพธ์")
    assert_handled(outcome)
    units = set(outcome.layer("zones").unit_id)
    assert units == {"ตะวันตก", "ตะวันออก"}
    assert outcome.region_share("forest") == reference.region_share("forest")


def test_thai_layer_name_that_does_not_exist_is_named_in_the_error(tmp_path):
    s = SynthRegion(tmp_path / "ข้อมูล")
    region_yaml = _region_with(s, boundary={"layer": "จังหวัด"})
    assert_refused(run_cli(region_yaml, tmp_path / "out"), "'จังหวัด'", "units")


def test_shapefile_without_prj_is_refused_naming_the_prj(synth, tmp_path):
    synth.build()
    shp = synth.write_vector(synth.boundary_frame(), "units.shp")
    shp.with_suffix(".prj").unlink()
    region_yaml = _region_with(synth, boundary={"path": "data/units.shp", "layer": None})
    cfg = synth.config()
    cfg["boundary"] = {"path": "data/units.shp", "unit_field": "unit"}
    region_yaml = synth.write_yaml(cfg)
    assert_refused(run_cli(region_yaml, tmp_path / "out"), "units.shp", "no CRS", ".prj")


# -- output folder -----------------------------------------------------------------------------


def test_existing_outputs_are_kept_without_overwrite(region_yaml, tmp_path):
    out = tmp_path / "out"
    assert_handled(run_cli(region_yaml, out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run_cli(region_yaml, out).result
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and "--overwrite" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_output_folder_under_a_regular_file_is_refused(region_yaml, tmp_path):
    out = region_yaml / "out"  # region.yaml is a file, so out cannot be created
    r = run_cli(region_yaml, out).result
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith(f"error: {out}: cannot create the output folder")
    assert r.stderr.count("\n") == 1


def test_readonly_output_folder_is_refused(region_yaml, tmp_path, monkeypatch):
    """As root every folder is writable, so the check is made to fail through ``os.access``.

    (See test_immutable_output_folder_is_refused for a real one, made with ``chattr +i``.)
    """
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access

    def access(path, mode, **kwargs):
        if Path(path) == out and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    first = assert_refused(run_cli(region_yaml, out), str(out), "not writable")
    assert first.startswith("error: ")


def _chattr(path: Path, flag: str) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_immutable_output_folder_is_refused(region_yaml, tmp_path):
    """A real unwritable folder even for root: the immutable attribute (``chattr +i``)."""
    out = tmp_path / "locked"
    out.mkdir()
    if not _chattr(out, "+i"):
        if os.environ.get("CI") == "true":
            pytest.fail("chattr +i is not possible here")
        pytest.skip("chattr +i not possible (not root, or the file system does not support it)")
    try:
        assert_refused(run_cli(region_yaml, out), str(out), "not writable")
    finally:
        _chattr(out, "-i")


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_writing_the_raster_is_refused(region_yaml, tmp_path, monkeypatch):
    """Simulated: GDAL's COG copy fails with ENOSPC. Previous outputs stay as they were."""
    out = tmp_path / "out"
    assert_handled(run_cli(region_yaml, out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(rasterio.shutil, "copy", _enospc)
    r = run_cli(region_yaml, out, "--overwrite").result
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith("error: ") and "disk full" in r.stderr
    assert "tiny_zones.tif" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_disk_full_while_building_the_overviews_is_refused(region_yaml, tmp_path, monkeypatch):
    """Simulated: GDAL fails to write the zone raster's overviews for lack of space (as
    ecoplan.overviews reports it). One line, and the previous outputs stay as they were."""
    import ecoplan.export

    def no_space(path, *args, **kwargs):
        raise OSError(f"{path}: overviews could not be built: No space left on device")

    out = tmp_path / "out"
    assert_handled(run_cli(region_yaml, out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(ecoplan.export, "build_mode_overviews", no_space)
    r = run_cli(region_yaml, out, "--overwrite").result
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith("error: ") and "disk full" in r.stderr
    assert "tiny_zones.tif" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_disk_full_on_a_real_tiny_file_system_is_refused(region_yaml, tmp_path):
    """A 40 KiB tmpfs: the zone raster fits, the GeoPackage does not."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mnt)])
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("cannot mount a tmpfs")
        pytest.skip("cannot mount a tmpfs (not root)")
    try:
        outcome = run_cli(region_yaml, mnt)
        first = assert_refused(outcome, "tiny.gpkg")
        assert "disk full" in first or "No space" in first
    finally:
        subprocess.run(["umount", str(mnt)])


# -- known gaps outside the files this catalogue's author may change ------------------------------


def test_raster_of_only_crosswalk_nodata_codes_is_refused(synth, tmp_path):
    synth.build()
    synth.write_raster("landcover.tif", codes=np.zeros((SIZE, SIZE), np.uint8), nodata=None)
    region_yaml = synth.write_yaml(synth.config())
    assert_refused(run_cli(region_yaml, tmp_path / "out"), "landcover.tif", "no land-cover data")


def test_missing_layer_that_no_rule_uses_is_refused(synth, tmp_path):
    synth.build()
    cfg = synth.config()
    cfg["layers"]["roads"] = {"path": "data/roads.gpkg"}
    region_yaml = synth.write_yaml(cfg)
    assert_refused(run_cli(region_yaml, tmp_path / "out"), "roads.gpkg", "not found")


def test_a_grid_too_large_to_compute_is_refused_before_any_work(synth):
    from ecoplan.errors import InputError
    from ecoplan.pipeline import prepare_region

    region_yaml = synth.build(pixel_size_m=0.01)
    with pytest.raises(InputError, match="pixel_size_m"):
        prepare_region(region_yaml, chunk_size=10**6)


def test_boundary_feature_without_a_unit_value_is_refused(synth, tmp_path):
    gdf = synth.boundary_frame()
    gdf.loc[1, "unit"] = None
    region_yaml = _boundary(synth, gdf)
    assert_refused(run_cli(region_yaml, tmp_path / "out"), "boundary.gpkg", "'unit'", "no value")


# -- the CLI's error handling ---------------------------------------------------------------------


def test_permission_error_from_anywhere_is_one_error_line(region_yaml, tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/plans/north.gpkg")

    monkeypatch.setattr("ecoplan.cli.run.run_region", denied)
    r = run_cli(region_yaml, tmp_path / "out").result
    assert r.exit_code == 2
    assert r.stderr == "error: /srv/plans/north.gpkg: Permission denied\n"


def test_an_internal_error_is_exit_1_with_its_traceback(region_yaml, tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug in ecoplan")

    monkeypatch.setattr("ecoplan.cli.run.run_region", bug)
    r = run_cli(region_yaml, tmp_path / "out").result
    assert r.exit_code == 1
    assert isinstance(r.exception, ZeroDivisionError)  # click prints its traceback


def test_warnings_reach_the_stderr_of_each_invocation(synth, tmp_path):
    """Logging goes to the current sys.stderr, not to the first invocation's stream."""
    region_yaml = boundary_invalid(synth)
    for i in range(2):
        out = run_cli(region_yaml, tmp_path / f"out{i}")
        assert "repaired 2 invalid geometries" in out.stderr


def test_thai_shapefile_in_tis620_without_cpg_is_read_as_thai(synth, tmp_path, reference):
    """An old-style Thai shapefile: TIS-620 text in the .dbf and no .cpg to say so."""
    synth.build()
    gdf = synth.boundary_frame().rename(columns={"name_th": "ชื่อ"})
    pyogrio.write_dataframe(gdf, synth.data / "units.shp", encoding="cp874")
    (synth.data / "units.cpg").unlink()
    cfg = synth.config()
    cfg["boundary"] = {"path": "data/units.shp", "unit_field": "ชื่อ", "where": "\"ชื่อ\" <> ''"}
    outcome = run_cli(synth.write_yaml(cfg), tmp_path / "out")
    assert_handled(outcome)
    assert "reads as Thai in TIS-620 (cp874)" in outcome.stderr
    assert set(outcome.layer("zones").unit_id) == {"ตะวันตก", "ตะวันออก"}


def test_latin1_shapefile_without_cpg_is_not_mistaken_for_thai(synth, tmp_path):
    synth.build()
    gdf = synth.boundary_frame()
    gdf["unit"] = ["Société Générale", "Müllerstraße"]
    pyogrio.write_dataframe(gdf, synth.data / "units.shp", encoding="ISO-8859-1")
    (synth.data / "units.cpg").unlink()
    cfg = synth.config()
    cfg["boundary"] = {"path": "data/units.shp", "unit_field": "unit"}
    outcome = run_cli(synth.write_yaml(cfg), tmp_path / "out")
    assert_handled(outcome)
    assert "TIS-620" not in outcome.stderr
    assert set(outcome.layer("zones").unit_id) == {"Société Générale", "Müllerstraße"}


def test_boundary_with_z_coordinates_is_handled(synth, tmp_path, reference):
    """3-D polygons (from a GPS or CAD export): heights are ignored, areas are on the ground."""
    gdf = synth.boundary_frame()
    gdf["geometry"] = shapely.force_3d(gdf.geometry.values, 350.0)
    outcome = run_cli(_boundary(synth, gdf), tmp_path / "out")
    assert_handled(outcome)
    assert outcome.region_share("forest") == reference.region_share("forest")
