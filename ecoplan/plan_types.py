"""The six plan types of the master plan (DESIGN.md section 2).

This module owns the table; the plan layers (``plan_<id>``) and the counters import it.
It imports nothing spatial.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlanType", "PLAN_TYPES", "PLAN_TYPE_BY_ID", "layer_name"]


@dataclass(frozen=True)
class PlanType:
    id: str
    name_en: str
    name_th: str

    @property
    def layer(self) -> str:
        return layer_name(self.id)


PLAN_TYPES: tuple[PlanType, ...] = (
    PlanType("livable_city", "Livable city", "เมืองน่าอยู่"),
    PlanType("secure_rural", "Secure rural", "ชนบทมั่นคง"),
    PlanType(
        "sustainable_agriculture",
        "Sustainable and safe agriculture",
        "เกษตรยั่งยืนและปลอดภัย",
    ),
    PlanType("eco_industrial", "Eco-industrial", "อุตสาหกรรมเชิงนิเวศ"),
    PlanType(
        "natural_conservation",
        "Natural-resource conservation area",
        "พื้นที่พิเศษเพื่อการอนุรักษ์ทรัพยากรธรรมชาติ",
    ),
    PlanType(
        "heritage",
        "Archaeological, architectural and cultural heritage, local identity and way of life",
        "แหล่งโบราณคดี มรดกทางสถาปัตยกรรมและศิลปวัฒนธรรม อัตลักษณ์และวิถีชีวิตพื้นถิ่น",
    ),
)

PLAN_TYPE_BY_ID: dict[str, PlanType] = {p.id: p for p in PLAN_TYPES}


def layer_name(plan_id: str) -> str:
    """GeoPackage layer name of a plan type: ``plan_<id>``."""
    return f"plan_{plan_id}"
