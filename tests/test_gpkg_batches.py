"""Big layers are written to the GeoPackage in batches of rows, with the same result."""

from __future__ import annotations

import geopandas as gpd
import pyogrio
import shapely

from ecoplan.export import GeoPackageWriter, _encoded


def test_a_layer_written_in_batches_reads_back_whole_and_in_order(tmp_path):
    squares = [shapely.box(i, 0, i + 0.5, 0.5) for i in range(25)]
    gdf = gpd.GeoDataFrame({"n": list(range(25))}, geometry=squares, crs="EPSG:32647")
    path = tmp_path / "t.gpkg"
    with GeoPackageWriter(path) as gpkg:
        gpkg.batch_vertices = 12  # two or three squares per batch
        gpkg.add("squares", gdf)
    assert not list(tmp_path.glob(".*"))
    back = pyogrio.read_dataframe(path, layer="squares")
    assert back["n"].tolist() == list(range(25))
    assert all(shapely.equals(a, b) for a, b in zip(back.geometry, gdf.geometry, strict=True))
    assert [str(n) for n in pyogrio.list_layers(path)[:, 0]] == ["squares"]


def test_a_layer_added_in_parts_reads_back_whole_in_order_beside_another(tmp_path):
    squares = [shapely.box(i, 0, i + 0.5, 0.5) for i in range(9)]
    gdf = gpd.GeoDataFrame({"n": list(range(9))}, geometry=squares, crs="EPSG:32647")
    path = tmp_path / "t.gpkg"
    with GeoPackageWriter(path) as gpkg:
        # two layers made a part at a time, interleaved; empty parts change nothing
        for lo, hi in [(0, 4), (4, 4), (4, 9)]:
            gpkg.add("a", gdf.iloc[lo:hi])
            gpkg.add("b", gdf.iloc[lo:hi])
        gpkg.add("empty", gdf.iloc[0:0])
    assert gpkg.layers == ["a", "b", "empty"]
    assert [str(n) for n in pyogrio.list_layers(path)[:, 0]] == ["a", "b", "empty"]
    for name in ("a", "b"):
        back = pyogrio.read_dataframe(path, layer=name)
        assert back["n"].tolist() == list(range(9))
    assert len(pyogrio.read_dataframe(path, layer="empty")) == 0


def test_the_writer_leaves_gdals_sqlite_settings_as_they_were(tmp_path):
    # SQLite does not sync the temporary file at each layer; the caller's setting comes back
    squares = [shapely.box(i, 0, i + 0.5, 0.5) for i in range(3)]
    gdf = gpd.GeoDataFrame({"n": [0, 1, 2]}, geometry=squares, crs="EPSG:32647")
    before = pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS")
    with GeoPackageWriter(tmp_path / "t.gpkg") as gpkg:
        gpkg.add("squares", gdf)
    assert pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS") == before
    try:
        with GeoPackageWriter(tmp_path / "u.gpkg") as gpkg:
            gpkg.add("squares", gdf)
            raise RuntimeError("a later step failed")
    except RuntimeError:
        pass
    assert pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.gpkg"]
    assert pyogrio.read_dataframe(tmp_path / "t.gpkg", layer="squares")["n"].tolist() == [0, 1, 2]


def test_rows_written_to_several_layers_at_once_equal_each_layer_written_alone(tmp_path):
    # zones and an unchanged proposed plan: the geometries are encoded once for both layers
    squares = [shapely.multipolygons([shapely.box(i, 0, i + 0.5, 0.5)]) for i in range(7)]
    gdf = gpd.GeoDataFrame(
        {
            "zone_code": list(range(7)),
            "zone_th": ["เมือง", "ชนบท", "ป่าไม้", "เกษตร", "น้ำ", "อื่น ๆ", "อุตสาหกรรม"],
            "area_ha": [0.25 * i for i in range(7)],
        },
        geometry=squares,
        crs="EPSG:32647",
    )
    assert _encoded(gdf) is not None  # the geometries are encoded once, not the usual way
    together, alone = tmp_path / "together.gpkg", tmp_path / "alone.gpkg"
    with GeoPackageWriter(together) as gpkg:
        gpkg.batch_vertices = 12  # batches too
        for lo, hi in [(0, 3), (3, 3), (3, 7)]:
            gpkg.add("zones", gdf.iloc[lo:hi], also={"proposed_zones": None})
    with GeoPackageWriter(alone) as gpkg:
        for name in ("zones", "proposed_zones"):
            gpkg.add(name, gdf)
    assert gpkg.layers == ["zones", "proposed_zones"]
    assert [str(n) for n in pyogrio.list_layers(together)[:, 0]] == ["zones", "proposed_zones"]
    for name in ("zones", "proposed_zones"):
        a = pyogrio.read_info(together, layer=name)
        b = pyogrio.read_info(alone, layer=name)
        assert a["geometry_type"] == b["geometry_type"] == "MultiPolygon"
        assert a["crs"] == b["crs"]
        assert list(a["fields"]) == list(b["fields"])
        assert list(a["dtypes"]) == list(b["dtypes"])
        _, _, wkb_a, fields_a = pyogrio.raw.read(together, layer=name)
        _, _, wkb_b, fields_b = pyogrio.raw.read(alone, layer=name)
        assert list(wkb_a) == list(wkb_b)
        assert all((x == y).all() for x, y in zip(fields_a, fields_b, strict=True))
