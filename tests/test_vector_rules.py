"""Vector zone rules: attribute selection, crosswalk of field values, burning in priority order."""

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from ecoplan._yaml import validate
from ecoplan.classify import BUILT_UP
from ecoplan.errors import CrosswalkError, InputError, RulesError
from ecoplan.grid import Grid
from ecoplan.refine import apply_vector_rules
from ecoplan.region import RegionConfig
from ecoplan.rules import Rules, VectorCondition, VectorZoneRule, load_crosswalk
from ecoplan.vector_rules import burn_rules, feature_targets, select_features

UTM = CRS.from_epsg(32647)
GRID = Grid(UTM, Affine(10, 0, 600_000, 0, -10, 1_500_100), 10, 10)  # 100 m x 100 m, 10 m px


def cond(**kw) -> VectorCondition:
    return VectorCondition.model_validate(kw)


def rule(**kw) -> VectorZoneRule:
    return VectorZoneRule.model_validate({"id": "r", "layer": "landuse", **kw})


def box(c0, r0, c1, r1):
    """A polygon covering grid columns c0..c1-1 and rows r0..r1-1 (pixel edges)."""
    return shapely.box(
        600_000 + 10 * c0, 1_500_100 - 10 * r1, 600_000 + 10 * c1, 1_500_100 - 10 * r0
    )


@pytest.fixture
def plans() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "name_th": [
                "ที่ดินประเภทอุตสาหกรรมและคลังสินค้า",
                "ที่ดินประเภทชนบทและเกษตรกรรม",
                " ที่ดินประเภทคลังสินค้า",
                None,
            ],
            "landuse": ["industrial", "farmland", "industrial", "residential"],
            "LU_CODE": ["U502", "A101", "A303/A405", "U405"],
            "area_rai": [120.0, 40.0, 300.0, 5.0],
            "ประเภท": ["อุตสาหกรรม", "เกษตร", "อุตสาหกรรม", "ชุมชน"],
        },
        geometry=[box(0, 0, 2, 2), box(2, 0, 4, 2), box(4, 0, 6, 2), box(6, 0, 8, 2)],
        crs=UTM,
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"field": "landuse", "equals": "industrial"}, [1, 0, 1, 0]),
        ({"field": "name_th", "equals": "ที่ดินประเภทคลังสินค้า"}, [0, 0, 1, 0]),  # blanks ignored
        (
            {"field": "name_th", "in": ["ที่ดินประเภทอุตสาหกรรมและคลังสินค้า", "ที่ดินประเภทคลังสินค้า"]},
            [1, 0, 1, 0],
        ),
        ({"field": "LU_CODE", "prefix": "U"}, [1, 0, 0, 1]),
        ({"field": "LU_CODE", "prefix": ["U5", "A3"]}, [1, 0, 1, 0]),
        ({"field": "area_rai", "equals": 40}, [0, 1, 0, 0]),
        ({"expression": "area_rai > 100 and landuse == 'industrial'"}, [1, 0, 1, 0]),
        ({"expression": "`ประเภท` == 'อุตสาหกรรม'"}, [1, 0, 1, 0]),
    ],
)
def test_select_features(plans, where, expected):
    assert select_features(plans, cond(**where), source="p").astype(int).tolist() == expected


def test_no_condition_selects_every_feature(plans):
    assert select_features(plans, None, source="p").all()


def test_missing_field_names_the_field_and_lists_the_fields(plans):
    with pytest.raises(InputError, match=r"p: no field 'LANDUSE'; fields are: name_th, landuse"):
        select_features(plans, cond(field="LANDUSE", equals="x"), source="p")


def test_broken_expression_is_a_rules_error(plans):
    with pytest.raises(RulesError, match="expression 'nosuchfield > 3' failed"):
        select_features(plans, cond(expression="nosuchfield > 3"), source="p")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"field": "a"}, "exactly one of 'equals', 'in', 'prefix' or 'expression'"),
        ({"field": "a", "equals": 1, "prefix": "x"}, "exactly one"),
        ({"equals": 1}, "need a 'field'"),
        ({"expression": "a > 1", "field": "a"}, "leave 'field' out"),
    ],
)
def test_bad_condition_is_refused(data, message):
    with pytest.raises(RulesError, match=message):
        validate(VectorCondition, data, source="rules.yaml")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"zone": "forest", "crosswalk": "ldd"}, "exactly one of 'zone' or 'crosswalk'"),
        ({}, "exactly one of 'zone' or 'crosswalk'"),
        ({"zone": "forest", "field": "x"}, "'field' goes with 'crosswalk'"),
        ({"zone": "park"}, "unknown zone 'park'"),
        ({"zone": "forest", "layer": "parks"}, "layer"),
    ],
)
def test_bad_rule_is_refused_naming_the_key(data, message):
    with pytest.raises(RulesError, match=message):
        validate(
            Rules, {"vector_zones": [{"id": "r", "layer": "landuse", **data}]}, source="f.yaml"
        )


def test_rules_error_names_the_rule_position():
    with pytest.raises(RulesError, match=r"f\.yaml: vector_zones\[0\]"):
        validate(Rules, {"vector_zones": [{"id": "r", "layer": "landuse"}]}, source="f.yaml")


def test_feature_targets_with_a_zone(plans):
    r = rule(where={"field": "landuse", "equals": "industrial"}, zone="industrial")
    assert feature_targets(plans, r, source="p").tolist() == [5, 0, 5, 0]


def test_feature_targets_through_the_ldd_crosswalk(plans):
    r = rule(crosswalk="ldd")  # field LU_CODE, the crosswalk's default
    out = feature_targets(plans, r, crosswalk=load_crosswalk("ldd"), source="p")
    assert out.tolist() == [5, 2, 2, BUILT_UP]


def test_crosswalk_field_missing_is_named(plans):
    r = rule(crosswalk="ldd", field="LU_CODE2")
    with pytest.raises(InputError, match="no field 'LU_CODE2'"):
        feature_targets(plans, r, crosswalk=load_crosswalk("ldd"), source="p")


def test_unknown_ldd_code_names_value_count_file_and_field(plans):
    bad = plans.assign(LU_CODE=["Q1", "Q1", "A101", "A101"])
    with pytest.raises(CrosswalkError, match=r"p, field 'LU_CODE': value 'Q1' \(2 features\)"):
        feature_targets(bad, rule(crosswalk="ldd"), crosswalk=load_crosswalk("ldd"), source="p")


def burn(zones, layers, units=None, chunks=(10, 10)):
    z = da.from_array(zones, chunks=chunks)
    u = da.from_array(np.ones_like(zones) if units is None else units, chunks=chunks)
    return burn_rules(z, layers, grid=GRID, units=u).compute()


def test_first_rule_wins_where_rules_overlap_and_replaces_limits_the_overwrite():
    zones = np.full((10, 10), 2, np.uint8)  # agriculture
    zones[:, 8:] = 6  # water on the right
    estate = gpd.GeoDataFrame(geometry=[box(0, 0, 5, 5)], crs=UTM)
    park = gpd.GeoDataFrame(geometry=[box(3, 3, 10, 10)], crs=UTM)
    r_estate = VectorZoneRule(id="estate", layer="industrial_estates", zone="industrial")
    r_park = VectorZoneRule(
        id="park", layer="protected_areas", zone="forest", replaces=["agriculture", "urban"]
    )
    layers = [(r_estate, estate, np.array([5], np.uint8)), (r_park, park, np.array([1], np.uint8))]
    out = burn(zones, layers)
    assert (out[:5, :5] == 5).all()  # the estate, first in the list, wins in the overlap
    assert (out[5:, 3:8] == 1).all() and (out[3:5, 5:8] == 1).all()
    assert (out[:, 8:] == 6).all()  # water is not in the park rule's 'replaces'
    assert (out[5:, :3] == 2).all()
    # the same with the order reversed: the park wins the overlap
    out2 = burn(zones, layers[::-1])
    assert (out2[3:5, 3:5] == 1).all()


def test_pixels_outside_the_units_are_never_burnt_and_chunking_does_not_matter():
    zones = np.full((10, 10), 2, np.uint8)
    units = np.ones((10, 10), np.int32)
    units[:, :2] = 0
    zones[:, :2] = 0
    gdf = gpd.GeoDataFrame(geometry=[box(0, 0, 10, 10)], crs=UTM)
    r = VectorZoneRule(id="e", layer="industrial_estates", zone="industrial")
    a = burn(zones, [(r, gdf, np.array([5], np.uint8))], units=units)
    b = burn(zones, [(r, gdf, np.array([5], np.uint8))], units=units, chunks=(3, 4))
    assert (a == b).all()
    assert (a[:, :2] == 0).all() and (a[:, 2:] == 5).all()


def test_region_layers_are_read_reprojected_and_burnt(tmp_path, plans):
    # the landuse layer is stored in EPSG:4326 with Thai values; the grid is UTM 47N
    path = tmp_path / "landuse.gpkg"
    plans.to_crs(4326).to_file(path, layer="landuse")
    config = RegionConfig.model_validate(
        {
            "region": {"id": "t"},
            "boundary": {"path": str(path)},
            "landcover": {"path": str(path), "crosswalk": "worldcover"},
            "layers": {"landuse": {"path": str(path)}},
        }
    )
    rules = Rules.model_validate(
        {
            "vector_zones": [
                {
                    "id": "dpt",
                    "layer": "landuse",
                    "zone": "industrial",
                    "where": {"field": "name_th", "in": ["ที่ดินประเภทอุตสาหกรรมและคลังสินค้า"]},
                },
                {"id": "ldd", "layer": "landuse", "crosswalk": "ldd"},
                {"id": "estates", "layer": "industrial_estates", "zone": "industrial"},
            ]
        }
    )
    zones = da.full((10, 10), 7, dtype=np.uint8, chunks=5)
    out, notes = apply_vector_rules(
        zones, config=config, rules=rules, grid=GRID, units=da.ones((10, 10), chunks=5)
    )
    out = out.compute()
    assert out[:2, :8].tolist() == [[5, 5, 2, 2, 2, 2, BUILT_UP, BUILT_UP]] * 2
    assert (out[2:, :] == 7).all()
    assert "vector_zones dpt: 1 of 4 features of 'landuse' burnt" in notes
    assert "vector_zones estates: skipped, the region gives no 'industrial_estates' layer" in notes


def test_unknown_crosswalk_of_a_rule_names_the_rule():
    from ecoplan.vector_rules import load_rule_crosswalk

    with pytest.raises(RulesError, match="vector_zones rule 'r': unknown crosswalk 'lddd'"):
        load_rule_crosswalk(rule(crosswalk="lddd"))


def test_dpt_plan_layer_by_thai_category_name(plans):
    r = rule(crosswalk="dpt_plan", field="name_th")
    out = feature_targets(plans, r, crosswalk=load_crosswalk("dpt_plan"), source="p")
    assert out.tolist() == [5, 2, 5, 0]  # the feature without a category is not burnt


def test_thai_field_name_in_a_condition(plans):
    r = rule(where={"field": "ประเภท", "equals": "อุตสาหกรรม"}, zone="industrial")
    assert feature_targets(plans, r, source="p").tolist() == [5, 0, 5, 0]
