"""Choosing a lead professional, free of I/O: eligibility, an explainable score, and the siblings rule.

The score is deterministic and every part is kept, so a manager, a family or an auditor can see why a practitioner
was proposed: existing relationship 40, family's preference 30, skills against the panel's needs profile up to 20,
caseload headroom up to 10, same locality 10, kaupapa Māori practice for a child with iwi affiliations 10.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from shared.events.codes import NeedDomain

KAUPAPA_MAORI = "kaupapa_maori"


@dataclass(frozen=True, slots=True)
class Practitioner:
    practitioner_id: str
    agency: str
    discipline: str
    needs: frozenset[NeedDomain]
    languages: frozenset[str]
    cultural_competencies: frozenset[str]
    locality: str | None
    max_caseload: int
    caseload: int
    manager_id: str
    active: bool

    @property
    def has_capacity(self) -> bool:
        return self.caseload < self.max_caseload


@dataclass(frozen=True, slots=True)
class ChildNeeds:
    """What the match is made against: the panel's needs profile and what the referral told us about the child."""

    needs_profile: frozenset[NeedDomain]
    locality: str | None = None
    iwi_affiliated: bool = False
    involved_practitioner_ids: frozenset[str] = frozenset()
    preferred_practitioner_id: str | None = None


@dataclass(frozen=True, slots=True)
class ScorePart:
    name: str
    points: int
    why: str


@dataclass(frozen=True, slots=True)
class Candidate:
    practitioner_id: str
    manager_id: str
    total: int
    parts: tuple[ScorePart, ...]
    basis: str = "score"

    def explain(self) -> list[dict[str, object]]:
        return [{"part": p.name, "points": p.points, "why": p.why} for p in self.parts]


def score(practitioner: Practitioner, child: ChildNeeds) -> Candidate:
    parts = []
    if practitioner.practitioner_id in child.involved_practitioner_ids:
        parts.append(ScorePart("relationship", 40, "already works with the child or whānau"))
    if practitioner.practitioner_id == child.preferred_practitioner_id:
        parts.append(ScorePart("family_preference", 30, "the family asked for this practitioner"))
    covered = practitioner.needs & child.needs_profile
    if child.needs_profile:
        points = round(20 * len(covered) / len(child.needs_profile))
        names = ", ".join(sorted(covered)) or "none"
        parts.append(
            ScorePart("skills", points, f"covers {len(covered)} of {len(child.needs_profile)} needs ({names})")
        )
    headroom = practitioner.max_caseload - practitioner.caseload
    parts.append(
        ScorePart(
            "caseload",
            round(10 * headroom / practitioner.max_caseload) if practitioner.max_caseload else 0,
            f"{practitioner.caseload} of {practitioner.max_caseload} cases",
        )
    )
    if child.locality and practitioner.locality and child.locality.casefold() == practitioner.locality.casefold():
        parts.append(ScorePart("locality", 10, f"works in {practitioner.locality}"))
    if child.iwi_affiliated and KAUPAPA_MAORI in practitioner.cultural_competencies:
        parts.append(ScorePart("culture", 10, "kaupapa Māori practice for a child with iwi affiliations"))
    return Candidate(
        practitioner_id=practitioner.practitioner_id,
        manager_id=practitioner.manager_id,
        total=sum(p.points for p in parts),
        parts=tuple(parts),
    )


def ineligibility(practitioner: Practitioner, *, excluded: frozenset[str]) -> str | None:
    """Why this practitioner cannot be proposed now, or None."""
    if not practitioner.active:
        return "not active"
    if not practitioner.has_capacity:
        return "at capacity"
    if practitioner.practitioner_id in excluded:
        return "already declined or replaced for this child"
    return None


def rank(practitioners: Sequence[Practitioner], child: ChildNeeds, *, excluded: frozenset[str]) -> list[Candidate]:
    """Eligible candidates, best first; ties go to the lighter caseload, then the practitioner id (a stable order)."""
    caseload = {p.practitioner_id: p.caseload for p in practitioners}
    eligible = [score(p, child) for p in practitioners if ineligibility(p, excluded=excluded) is None]
    return sorted(eligible, key=lambda c: (-c.total, caseload[c.practitioner_id], c.practitioner_id))


class SiblingDecision(StrEnum):
    SAME_LEAD = "same_lead"
    AT_CAPACITY = "sibling's lead is at capacity"
    FAMILY_ASKED_OTHERWISE = "the family asked for another practitioner"
    NOT_ELIGIBLE = "sibling's lead cannot take this child"


@dataclass(frozen=True, slots=True)
class Choice:
    """The ranked candidates to propose, in order, and the siblings-rule exception if one applied."""

    candidates: list[Candidate]
    sibling_exception: str | None = None
    reasons_if_empty: list[str] = field(default_factory=list)


def choose(
    practitioners: Sequence[Practitioner],
    child: ChildNeeds,
    *,
    sibling_lead_id: str | None,
    excluded: frozenset[str] = frozenset(),
) -> Choice:
    """Siblings share one lead unless that lead is full or the family asks otherwise; otherwise the best score."""
    ranked = rank(practitioners, child, excluded=excluded)
    exception = None
    if sibling_lead_id is not None:
        lead = next((p for p in practitioners if p.practitioner_id == sibling_lead_id), None)
        wanted_other = child.preferred_practitioner_id not in (None, sibling_lead_id)
        if wanted_other:
            exception = SiblingDecision.FAMILY_ASKED_OTHERWISE.value
        elif lead is None or not lead.active or sibling_lead_id in excluded:
            exception = SiblingDecision.NOT_ELIGIBLE.value
        elif not lead.has_capacity:
            exception = SiblingDecision.AT_CAPACITY.value
        else:
            first = score(lead, child)
            sibling = ScorePart("sibling", 0, "leads this child's sibling: siblings share one lead professional")
            first = Candidate(first.practitioner_id, first.manager_id, first.total, (sibling, *first.parts), "sibling")
            ranked = [first, *[c for c in ranked if c.practitioner_id != sibling_lead_id]]
    reasons = []
    if not ranked:
        reasons = sorted(
            {
                f"{p.practitioner_id}: {why}"
                for p in practitioners
                if (why := ineligibility(p, excluded=excluded)) is not None
            }
        ) or ["no practitioners in the directory"]
    return Choice(candidates=ranked, sibling_exception=exception, reasons_if_empty=reasons)


def ready_to_match(*, accepted: bool, participation: str | None, has_lead: bool, withdrawn: bool) -> bool:
    """A lead is found only when the panel accepted AND the family agreed to take part."""
    return accepted and participation == "yes" and not has_lead and not withdrawn


class ReassignmentReason(StrEnum):
    FAMILY_REQUEST = "family_request"
    LEAD_LEAVING = "lead_leaving"
    CAPACITY = "capacity"
    MANAGER = "manager"
