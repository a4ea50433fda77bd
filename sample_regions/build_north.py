"""Rebuild the ``north`` sample region from the shared real data (run from the repo root).

    python sample_regions/build_north.py ../shared/data

Writes ``sample_regions/north/data/provinces.gpkg`` (the 77 provinces of Thailand with their
region in the six-region system) and copies the MODIS 2019 land-cover clip. See the README there.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pyogrio

REGION_IDS = {1: "north", 2: "central", 3: "northeast", 4: "west", 5: "east", 6: "south"}
REGION_EN = {
    1: "Northern",
    2: "Central",
    3: "Northeastern",
    4: "Western",
    5: "Eastern",
    6: "Southern",
}


def main(shared: Path) -> None:
    out = Path(__file__).parent / "north" / "data"
    out.mkdir(parents=True, exist_ok=True)
    adm = shared / "thailand-admin-boundaries"
    prov = pyogrio.read_dataframe(adm / "th_adm1.geojson")
    table = pd.read_csv(adm / "province_regions_kongvut.csv")
    regions = pd.read_csv(adm / "regions_kongvut.csv")
    table = table.merge(regions.rename(columns={"id": "geography_id", "name": "region_th"}))
    prov = prov.merge(
        table[["name_th", "geography_id", "region_th"]], left_on="ADM1_TH", right_on="name_th"
    )
    assert len(prov) == 77, len(prov)
    prov["region"] = prov["geography_id"].map(REGION_IDS)
    prov["region_en"] = prov["geography_id"].map(REGION_EN)
    prov = prov[
        ["ADM1_PCODE", "ADM1_EN", "ADM1_TH", "region", "region_en", "region_th", "geometry"]
    ]
    prov = prov.sort_values("ADM1_PCODE").reset_index(drop=True)
    target = out / "provinces.gpkg"
    target.unlink(missing_ok=True)
    pyogrio.write_dataframe(prov, target, layer="provinces", promote_to_multi=True)
    lc = shared / "thailand-modis-landcover-2019" / "mcd12c1_2019_igbp_thailand.tif"
    shutil.copyfile(lc, out / "modis_igbp_2019_thailand.tif")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
