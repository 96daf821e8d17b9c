"""A seed practitioner directory for local runs (`make run`): never used in production."""

import asyncio
import sys

from services.assignment import storage
from shared.db import make_engine, make_sessions, transaction

PRACTITIONERS = [
    (
        "prac-sw-1",
        "Hemi Walker",
        "oranga-tamariki",
        "social worker",
        ["family_violence", "parenting_capacity"],
        ["kaupapa_maori"],
        "Gisborne",
        12,
        "mgr-ot-1",
    ),
    (
        "prac-nurse-1",
        "Sione Taufa",
        "health-nz",
        "public health nurse",
        ["health", "mental_health"],
        [],
        "Gisborne",
        15,
        "mgr-hnz-1",
    ),
    (
        "prac-psych-1",
        "Priya Nair",
        "health-nz",
        "psychologist",
        ["mental_health", "behaviour"],
        [],
        "Napier",
        10,
        "mgr-hnz-1",
    ),
    (
        "prac-teacher-1",
        "Kiri Ngata",
        "education-moe",
        "learning support teacher",
        ["education", "behaviour"],
        ["kaupapa_maori"],
        "Gisborne",
        12,
        "mgr-moe-1",
    ),
    (
        "prac-youth-1",
        "Josh Brown",
        "whanau-ora",
        "youth worker",
        ["youth_justice", "behaviour", "substance_use"],
        ["kaupapa_maori"],
        "Gisborne",
        14,
        "mgr-wo-1",
    ),
    (
        "prac-ngo-1",
        "Anna Lee",
        "ngo-barnardos",
        "family support worker",
        ["parenting_capacity", "economic", "housing"],
        [],
        "Napier",
        16,
        "mgr-ngo-1",
    ),
]


async def seed(database_url: str) -> int:
    engine = make_engine(database_url, "assignment")
    async with transaction(make_sessions(engine)) as session:
        for pid, name, agency, discipline, needs, culture, locality, maximum, manager in PRACTITIONERS:
            await storage.put_practitioner(
                session,
                practitioner_id=pid,
                name=name,
                agency=agency,
                discipline=discipline,
                needs=needs,
                languages=["en"],
                cultural_competencies=culture,
                locality=locality,
                max_caseload=maximum,
                manager_id=manager,
                active=True,
            )
    await engine.dispose()
    return len(PRACTITIONERS)


if __name__ == "__main__":
    print(f"seeded {asyncio.run(seed(sys.argv[1]))} practitioners")
