"""Plan layers: hand-built 4 x 4 grids of 100 m cells (1 ha each), two units (left, right)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from ecoplan.buffers import BufferResult
from ecoplan.errors import RulesError
from ecoplan.grid import Grid
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.plans import PLAN_COLUMNS, PlanInputs, derive_plans
from ecoplan.rules import BufferRule, PlanRule, Rules, load_rules

CRS_UTM = CRS.from_epsg(32647)
GRID = Grid(CRS_UTM, Affine(100.0, 0.0, 500000.0, 0.0, -100.0, 2000400.0), 4, 4)
F, A, U, W = 1, 2, 4, 6  # forest, agriculture, urban, water
ZONES = np.array(
    [
        [F, F, A, A],
        [F, F, A, U],
        [W, F, A, U],
        [W, A, A, A],
    ],
    dtype=np.uint8,
)
UNITS = np.array([[1, 1, 2, 2]] * 4, dtype=np.int32)


def rule(id, plan, sub, **source):
    return PlanRule(id=id, plan=plan, subcategory=sub, source=source)


def inputs(**kw):
    base = dict(zones=ZONES, units=UNITS, unit_ids=["L", "R"], grid=GRID, region_id="test")
    return PlanInputs(**{**base, **kw})


def test_every_plan_type_gets_a_layer_with_the_contract_columns():
    result = derive_plans(inputs(), [rule("u", "livable_city", "Urban", zones=["urban"])])
    assert list(result.layers) == [p.layer for p in PLAN_TYPES]
    for gdf in result.layers.values():
        assert list(gdf.columns) == PLAN_COLUMNS
        assert gdf.crs == CRS_UTM


def test_zone_rule_gives_one_feature_per_unit_with_cell_area():
    result = derive_plans(
        inputs(), [rule("farm", "sustainable_agriculture", "Farm", zones=["agriculture"])]
    )
    gdf = result.layers["plan_sustainable_agriculture"]
    # agriculture: unit L has 1 cell (row 3, col 1), unit R has 6 cells
    assert gdf["unit_id"].tolist() == ["L", "R"]
    assert gdf["area_ha"].tolist() == pytest.approx([1.0, 6.0])
    assert gdf["rule_ids"].tolist() == ["farm", "farm"]
    assert set(gdf["plan_type"]) == {"sustainable_agriculture"}
    assert set(gdf["name_th"]) == {"เกษตรยั่งยืนและปลอดภัย"}
    assert set(gdf["region_id"]) == {"test"}
    assert gdf.geometry.is_valid.all()
    assert (gdf.geometry.geom_type == "MultiPolygon").all()


def test_plan_without_inputs_is_empty_with_a_warning_naming_the_reason():
    rules = [rule("site", "heritage", "Site", layer="heritage_sites")]
    result = derive_plans(inputs(), rules)
    assert len(result.layers["plan_heritage"]) == 0
    assert any(
        "plan heritage: no features" in w and "no 'heritage_sites' layer" in w
        for w in result.warnings
    )
    # plans with no rule at all are reported too
    assert any(w.startswith("plan livable_city: no features") for w in result.warnings)


def test_earlier_rule_wins_so_features_do_not_overlap_and_areas_add_up():
    # a protected area covering the top two rows of unit L (4 ha): 3 forest cells + ... forest
    protected = shapely.box(500000, 2000200, 500200, 2000400)
    rules = [
        rule("pa", "natural_conservation", "Protected area", layer="protected_areas"),
        rule("forest", "natural_conservation", "Forest", zones=["forest"]),
        rule("water", "natural_conservation", "Water", zones=["water"]),
    ]
    layers = {"protected_areas": gpd.GeoSeries([protected], crs=CRS_UTM)}
    gdf = derive_plans(inputs(layers=layers), rules).layers["plan_natural_conservation"]
    by_sub = dict(zip(gdf["subcategory"], gdf["area_ha"], strict=True))
    # forest cells in L: 4 in the protected rows, 1 below (row 2, col 1); water: 2 cells
    assert by_sub == pytest.approx({"Protected area": 4.0, "Forest": 1.0, "Water": 2.0})
    geoms = list(gdf.geometry)
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            assert shapely.intersection(geoms[i], geoms[j]).area == pytest.approx(0.0)


def test_vector_layer_is_cut_by_units_and_clipped_to_the_region():
    # a strip crossing both units and sticking out of the grid to the east
    strip = shapely.box(500150, 2000000, 500600, 2000100)
    layers = {"industrial_estates": gpd.GeoSeries([strip], crs=CRS_UTM)}
    rules = [rule("estate", "eco_industrial", "Estate", layer="industrial_estates")]
    gdf = derive_plans(inputs(layers=layers), rules).layers["plan_eco_industrial"]
    assert gdf["unit_id"].tolist() == ["L", "R"]
    assert gdf["area_ha"].tolist() == pytest.approx([0.5, 2.0])  # 50 m x 100 m; 200 m x 100 m


def test_points_have_no_area_and_the_warning_says_use_a_buffer():
    pts = gpd.GeoSeries([shapely.Point(500050, 2000050)], crs=CRS_UTM)
    rules = [rule("site", "heritage", "Site", layer="heritage_sites")]
    result = derive_plans(inputs(layers={"heritage_sites": pts}), rules)
    assert len(result.layers["plan_heritage"]) == 0
    assert any("no polygons" in w and "buffer" in w for w in result.warnings)


def test_buffer_rule_uses_exact_vector_bands_and_zone_band_cells():
    band = shapely.box(500000, 2000000, 500100, 2000050)  # 0.5 ha in unit L
    vec_rule = BufferRule(id="hp", name_en="H", source={"layer": "heritage_sites"}, distance_m=50)
    vec = BufferResult(
        vec_rule,
        np.zeros(ZONES.shape, np.uint8),
        gpd.GeoDataFrame({"ring": [1]}, geometry=[band], crs=CRS_UTM),
    )
    zone_rule = BufferRule(id="fe", name_en="E", source={"zones": ["forest"]}, distance_m=100)
    rings = np.zeros(ZONES.shape, np.uint8)
    rings[0, 2] = rings[1, 2] = rings[2, 2] = 1  # three cells of unit R
    zb = BufferResult(zone_rule, rings)
    rules = [
        rule("belt", "heritage", "Buffer", buffers=["hp"]),
        rule("edge", "natural_conservation", "Edge", buffers=["fe", "missing"]),
    ]
    result = derive_plans(inputs(buffers={"hp": vec, "fe": zb}), rules)
    assert result.layers["plan_heritage"]["area_ha"].tolist() == pytest.approx([0.5])
    edge = result.layers["plan_natural_conservation"]
    assert edge["unit_id"].tolist() == ["R"]
    assert edge["area_ha"].tolist() == pytest.approx([3.0])


def test_proposed_plan_zones_replace_todays_zones():
    proposed = ZONES.copy()
    proposed[3, 3] = U  # one more urban cell in unit R
    rules = [rule("u", "livable_city", "Urban", zones=["urban"])]
    today = derive_plans(inputs(), rules).layers["plan_livable_city"]
    after = derive_plans(inputs(zones=proposed, zones_from="proposed plan"), rules)
    assert today["area_ha"].sum() == pytest.approx(2.0)
    assert after.layers["plan_livable_city"]["area_ha"].sum() == pytest.approx(3.0)
    assert after.zones_from == "proposed plan"


def test_areas_table_lists_all_six_plans():
    result = derive_plans(inputs(), [rule("u", "livable_city", "Urban", zones=["urban"])])
    table = result.areas()
    assert table["plan_type"].tolist() == [p.id for p in PLAN_TYPES]
    assert table.set_index("plan_type").loc["livable_city", "area_ha"] == pytest.approx(2.0)
    assert table["features"].sum() == 1


def test_inputs_are_not_mutated():
    zones, units = ZONES.copy(), UNITS.copy()
    derive_plans(inputs(zones=zones, units=units), load_rules("default").plans)
    assert (zones == ZONES).all() and (units == UNITS).all()


def test_default_rules_cover_all_six_plans():
    plans = {r.plan for r in load_rules("default").plans}
    assert plans == {p.id for p in PLAN_TYPES}


def test_plans_section_errors_name_the_key():
    from ecoplan._yaml import validate

    data = {
        "plans": [
            {"id": "x", "plan": "city", "subcategory": "s", "source": {"zones": ["forest"]}},
            {"id": "y", "plan": "heritage", "subcategory": "s", "source": {}},
        ]
    }
    with pytest.raises(RulesError) as info:
        validate(Rules, data, source="r.yaml")
    text = str(info.value)
    assert "r.yaml: plans[0].plan: must be one of" in text
    assert "plans[1].source: give exactly one of" in text


def test_duplicate_plan_rule_ids_are_refused():
    from ecoplan._yaml import validate

    item = {"id": "x", "plan": "heritage", "subcategory": "s", "source": {"zones": ["forest"]}}
    with pytest.raises(RulesError, match="plan rule id 'x' is used more than once"):
        validate(Rules, {"plans": [item, item]}, source="r.yaml")


def test_result_does_not_depend_on_chunking():
    import dask.array as da

    protected = shapely.box(500000, 2000150, 500250, 2000400)
    layers = {"protected_areas": gpd.GeoSeries([protected], crs=CRS_UTM)}
    rules = [
        rule("pa", "natural_conservation", "Protected area", layer="protected_areas"),
        rule("forest", "natural_conservation", "Forest", zones=["forest"]),
        rule("farm", "sustainable_agriculture", "Farm", zones=["agriculture"]),
    ]
    whole = derive_plans(inputs(layers=layers), rules)
    chunked = derive_plans(
        inputs(
            zones=da.from_array(ZONES, chunks=(3, 2)),
            units=da.from_array(UNITS, chunks=(3, 2)),
            layers=layers,
        ),
        rules,
    )
    for name, gdf in whole.layers.items():
        other = chunked.layers[name]
        assert gdf.drop(columns="geometry").equals(other.drop(columns="geometry")), name
        assert all(shapely.equals(a, b) for a, b in zip(gdf.geometry, other.geometry, strict=True))


def test_run_derives_plans_from_vector_roles_and_their_buffers(tmp_path):
    """End to end: heritage points, a protected area and an estate on a 20 x 20 grid of 1 ha."""
    import pyogrio
    from synthetic_region import PIXEL, X0, Y0, box_boundary, write_raster, write_region

    from ecoplan.pipeline import run_region

    codes = np.full((20, 20), 10, np.uint8)  # tree cover -> forest
    codes[:, 10:] = 40  # cropland -> agriculture (unit B)
    codes[2:4, 12:14] = 50  # built-up -> urban, 4 ha
    write_raster(tmp_path / "lc.tif", codes)
    box_boundary(
        tmp_path / "units.gpkg",
        {
            "A": (X0, Y0 - 20 * PIXEL, X0 + 10 * PIXEL, Y0),
            "B": (X0 + 10 * PIXEL, Y0 - 20 * PIXEL, X0 + 20 * PIXEL, Y0),
        },
    )
    # a protected area of 3 x 2 cells in unit A, an estate of 2 x 2 cells in unit B
    gpd.GeoDataFrame(
        geometry=[shapely.box(X0 + 100, Y0 - 500, X0 + 400, Y0 - 300)], crs="EPSG:32647"
    ).to_file(tmp_path / "pa.gpkg")
    gpd.GeoDataFrame(
        geometry=[shapely.box(X0 + 1500, Y0 - 1500, X0 + 1700, Y0 - 1300)], crs="EPSG:32647"
    ).to_file(tmp_path / "estates.gpkg")
    # a heritage site (a point) in the middle of unit B
    gpd.GeoDataFrame(geometry=[shapely.Point(X0 + 1550, Y0 - 850)], crs="EPSG:32647").to_file(
        tmp_path / "heritage.gpkg"
    )
    region = write_region(
        tmp_path,
        landcover="lc.tif",
        boundary="units.gpkg",
        layers={
            "protected_areas": {"path": "pa.gpkg"},
            "industrial_estates": {"path": "estates.gpkg"},
            "heritage_sites": {"path": "heritage.gpkg"},
        },
        rules={"urban_rural": {"method": "all_urban"}},  # the 4 built-up cells are a town
    )
    result = run_region(region, tmp_path / "out")
    gpkg = result.geopackage

    def layer(name):
        return pyogrio.read_dataframe(gpkg, layer=name)

    heritage = layer("plan_heritage")
    assert heritage["subcategory"].tolist() == ["Heritage protection buffer"]
    assert heritage["rule_ids"].tolist() == ["heritage_belt"]
    assert heritage["unit_id"].tolist() == ["B"]
    # a 50 m buffer around a point: pi * 50^2 m2, less the polygon approximation
    assert heritage["area_ha"].iloc[0] == pytest.approx(np.pi * 50**2 / 1e4, rel=0.01)

    # the estate is burnt as industrial land (vector_zones), so its setback is a green belt too
    estate = layer("plan_eco_industrial").set_index("subcategory")
    assert sorted(estate.index) == ["Industrial estate", "Industrial setback (green belt)"]
    assert estate.loc["Industrial estate", "area_ha"] == pytest.approx(4.0, rel=1e-3)

    cons = layer("plan_natural_conservation").set_index(["unit_id", "subcategory"])
    assert cons.loc[("A", "Protected area"), "area_ha"] == pytest.approx(6.0, rel=1e-3)
    # forest of unit A less the protected area: 200 - 6 cells (ground areas: 1/k² ha a cell)
    assert cons.loc[("A", "Forest"), "area_ha"] == pytest.approx(194.0, rel=1e-3)
    city = layer("plan_livable_city")
    assert city["area_ha"].sum() == pytest.approx(4.0, rel=1e-3)
    assert not any("plan heritage" in w for w in result.warnings)
    assert any("plan secure_rural: no features" in w for w in result.warnings)
