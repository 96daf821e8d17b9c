"""A well-formed agency referral: what the demo sends, every test starts from, and the intake benchmark repeats.

`unique` goes into the agency's referral id and the names, so each sample is a new child and caregiver; `overrides`
replace top-level fields, and a nested object given as a dict is merged into the sample's (e.g. `child={...}`).
"""

from __future__ import annotations

import zlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.events.agency import ReferralSubmitted


def eight_year_old() -> date:
    return datetime.now(UTC).date() - timedelta(days=365 * 8)


def sample_referral(unique: str, **overrides: Any) -> ReferralSubmitted:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "agency_referral_id": f"HNZ-{unique}",
        "agency": "health-nz",
        "submitted_at": now.isoformat(),
        "referrer": {
            "id": "prac-77",
            "name": "Mere Practitioner",
            "role": "public health nurse",
            "contact": {"phone": "+64 21 555 0101"},
        },
        "child": {
            "given_names": f"Tama {unique}",
            "family_name": "Ngata",
            "date_of_birth": eight_year_old().isoformat(),
            "gender": "male",
            "iwi": ["Ngāti Porou"],
            "school": "Kōwhai School",
            "locality": "Gisborne",
        },
        "whanau": [
            {
                "name": f"Aroha {unique}",
                "relationship": "mother",
                "caregiver": True,
                "contact": {"phone": f"+64 27 {zlib.crc32(unique.encode()) % 10_000_000:07d}"},
            }
        ],
        "reasons": ["school_attendance", "parenting_support"],
        "reason_text": "Attendance has dropped this term; mum asked for help.",
        "needs": ["education", "parenting_capacity"],
        "consent": {
            "participation": "yes",
            "share_with": [{"agency": "education-moe", "purposes": ["assessment", "planning"]}],
            "given_by": f"Aroha {unique}",
            "given_by_relationship": "mother",
            "given_at": now.isoformat(),
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(fields.get(key), dict):
            fields[key] = fields[key] | value
        else:
            fields[key] = value
    return ReferralSubmitted.model_validate(fields)
