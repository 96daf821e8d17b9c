"""A well-formed agency referral to start each test from, with names unique to the test."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.events.agency import ReferralSubmitted


def make_referral(**overrides: Any) -> ReferralSubmitted:
    unique = uuid.uuid4().hex[:8]
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
            "date_of_birth": (now.date() - timedelta(days=365 * 8)).isoformat(),
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
                "contact": {"phone": f"+64 27 {int(unique, 16) % 10_000_000:07d}"},
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


def eight_year_old() -> date:
    return datetime.now(UTC).date() - timedelta(days=365 * 8)
