"""Reading a run's GeoPackage for the registry (ecoplan.run_output)."""

from __future__ import annotations

import hashlib

import geopandas
import pandas
import pyogrio
import pytest
from shapely.geometry import box

from ecoplan.errors import InputError
from ecoplan.plan_types import PLAN_TYPES
from ecoplan.run_output import inspect_run_output


def _gpkg(path, plan_ids, *, empty=(), metadata=None):
    for plan_id in plan_ids:
        frame = geopandas.GeoDataFrame(
            {"zone": [2]}, geometry=[box(0, 0, 10, 10)], crs="EPSG:32647"
        )
        frame = frame.iloc[0:0] if plan_id in empty else frame
        frame.to_file(path, layer=f"plan_{plan_id}", driver="GPKG")
    if metadata is not None:
        pyogrio.write_dataframe(pandas.DataFrame(metadata), path, layer="run_metadata")
    return path


def test_present_missing_and_empty_plan_layers_are_told_apart(tmp_path):
    path = _gpkg(
        tmp_path / "west.gpkg", ["livable_city", "heritage", "secure_rural"], empty=["heritage"]
    )
    out = inspect_run_output(path)
    assert out.region_id == "west" and out.region_id_source == "file name"
    assert [(p.plan_type, p.layer, p.feature_count) for p in out.plan_layers] == [
        ("livable_city", "plan_livable_city", 1),
        ("secure_rural", "plan_secure_rural", 1),
    ]
    assert out.empty == ("heritage",)
    assert out.missing == ("sustainable_agriculture", "eco_industrial", "natural_conservation")
    assert out.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "metadata",
    [
        {"key": ["crs"], "value": ["EPSG:32647"]},  # no region_id row
        {"name": ["region_id"], "setting": ["east"]},  # not key/value columns
    ],
)
def test_file_stem_is_used_when_run_metadata_has_no_region_id(tmp_path, metadata):
    path = _gpkg(tmp_path / "south.gpkg", [p.id for p in PLAN_TYPES], metadata=metadata)
    out = inspect_run_output(path)
    assert (out.region_id, out.region_id_source, out.note) == ("south", "file name", "")


def test_region_id_of_run_metadata_wins_over_the_file_name(tmp_path):
    path = _gpkg(
        tmp_path / "copy_of_run.gpkg",
        ["livable_city"],
        metadata={"key": ["region_id", "ecoplan_version"], "value": ["northeast", "0.1.0"]},
    )
    out = inspect_run_output(path)
    assert (out.region_id, out.region_id_source) == ("northeast", "run_metadata")
    assert "copy_of_run.gpkg" in out.note


def test_other_vector_formats_are_refused(tmp_path):
    path = tmp_path / "north.geojson"
    geopandas.GeoDataFrame({"a": [1]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326").to_file(path)
    with pytest.raises(InputError, match="is a GeoJSON file, not a GeoPackage"):
        inspect_run_output(path)
