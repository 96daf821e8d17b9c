"""A well-formed agency referral to start each test from, with names unique to the test (deploy/local/samples.py)."""

from __future__ import annotations

import uuid
from typing import Any

from deploy.local.samples import sample_referral
from shared.events.agency import ReferralSubmitted


def make_referral(**overrides: Any) -> ReferralSubmitted:
    return sample_referral(uuid.uuid4().hex[:8], **overrides)
