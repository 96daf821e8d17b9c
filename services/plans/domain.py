"""The Child's Plan, free of I/O: the stage machine (Assess → Plan → Implement → Review → exit), what each move needs,
the common assessment's domains, and who in the Child's Action Network may see the child's information."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.security import Principal


class Stage(StrEnum):
    ASSESS = "assess"
    PLAN = "plan"
    IMPLEMENT = "implement"
    REVIEW = "review"
    CLOSED = "closed"


class ExitReason(StrEnum):
    GOALS_ACHIEVED = "goals_achieved"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    MOVED_AWAY = "moved_away"
    STATUTORY_CARE_AND_PROTECTION = "statutory_care_and_protection"
    TURNED_18 = "turned_18"


class ReviewOutcome(StrEnum):
    CONTINUE = "continue"
    REVISE = "revise"
    CLOSE = "close"


Move = Literal["complete_assessment", "start_implementation", "hold_review", "review_outcome", "exit"]


class IllegalMove(Exception):
    """A stage change the case's current stage does not allow; the message says why (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """Facts the guards need, gathered by the caller."""

    child_voice_recorded: bool = False
    whanau_view_recorded: bool = False
    assessed_domains: int = 0
    plan_endorsed: bool = False
    goals: int = 0
    goals_without_actions: int = 0


def next_stage(
    stage: Stage,
    move: Move,
    *,
    facts: Readiness = Readiness(),
    outcome: ReviewOutcome | None = None,
    exit_reason: ExitReason | None = None,
) -> Stage:
    """Every legal move in one place. Anything else is an IllegalMove that says what is missing."""
    match stage, move:
        case Stage.CLOSED, _:
            raise IllegalMove("the case is closed")
        case Stage.ASSESS, "complete_assessment":
            missing = [
                what
                for what, present in (
                    ("the child's voice", facts.child_voice_recorded),
                    ("the whānau's view", facts.whanau_view_recorded),
                    ("at least one assessed domain", facts.assessed_domains > 0),
                )
                if not present
            ]
            if missing:
                raise IllegalMove(f"the assessment cannot be completed without {', '.join(missing)}")
            return Stage.PLAN
        case Stage.PLAN, "start_implementation":
            if not facts.plan_endorsed:
                raise IllegalMove("the plan must be endorsed by the panel before it is implemented")
            if facts.goals == 0 or facts.goals_without_actions:
                raise IllegalMove("every goal needs at least one action with an owner and a due date")
            return Stage.IMPLEMENT
        case Stage.IMPLEMENT, "hold_review":
            return Stage.REVIEW
        case Stage.REVIEW, "review_outcome":
            match outcome:
                case ReviewOutcome.CONTINUE:
                    return Stage.IMPLEMENT
                case ReviewOutcome.REVISE:
                    return Stage.PLAN
                case ReviewOutcome.CLOSE:
                    return Stage.REVIEW  # closes through an exit with its reason and handover
            raise IllegalMove("a review needs an outcome: continue, revise or close")
        case Stage.REVIEW, "exit":
            return Stage.CLOSED
        case _, "exit" if exit_reason not in (None, ExitReason.GOALS_ACHIEVED):
            return Stage.CLOSED
        case _, "exit":
            raise IllegalMove("a case closes for achieved goals only after a review")
        case _:
            raise IllegalMove(f"cannot {move.replace('_', ' ')} while the case is at the {stage} stage")


# The common assessment, shaped on Tuituia: the child's wellbeing, caregivers' capacity, whānau and environment.
ASSESSMENT_DOMAINS: Mapping[str, tuple[str, ...]] = {
    "child_wellbeing": ("health", "education", "identity_and_culture", "emotional_and_behavioural", "safety"),
    "caregiver_capacity": ("basic_care", "safety_and_protection", "guidance_and_boundaries", "emotional_warmth"),
    "whanau_and_environment": ("social", "cultural", "economic", "housing"),
}
DOMAIN_NAMES = frozenset(f"{area}.{domain}" for area, domains in ASSESSMENT_DOMAINS.items() for domain in domains)


class DomainAssessment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    strengths: Annotated[str, Field(max_length=4000)] = ""
    needs: Annotated[str, Field(max_length=4000)] = ""
    need_identified: bool = False


class Assessment(BaseModel):
    """Keys are `area.domain` names from ASSESSMENT_DOMAINS."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    domains: dict[str, DomainAssessment] = {}
    child_voice: Annotated[str, Field(max_length=4000)] = ""
    whanau_view: Annotated[str, Field(max_length=4000)] = ""

    def unknown_domains(self) -> list[str]:
        return sorted(set(self.domains) - DOMAIN_NAMES)

    def assessed_needs(self) -> list[str]:
        return sorted(name for name, d in self.domains.items() if d.need_identified)


# Need to know ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    kind: str
    agency: str | None
    legal_basis: str | None


def may_see_child(
    principal: Principal,
    *,
    lead_id: str,
    lead_manager_id: str | None,
    members: Iterable[Member],
    consented_agencies: frozenset[str],
) -> tuple[bool, str]:
    """Whether this person may see the child's case, and why (or why not).

    The lead and the lead's supervising manager always; auditors to check access; other practitioners in the
    Child's Action Network only while the family's consent covers their agency or a legal basis is recorded.
    """
    if principal.subject in (lead_id, lead_manager_id):
        return True, "lead professional or their manager"
    if principal.has_role("auditor"):
        return True, "auditor"
    member = next((m for m in members if m.member_id == principal.subject), None)
    if member is None:
        return False, "not in this child's Action Network"
    if member.legal_basis:
        return True, f"legal basis: {member.legal_basis}"
    if member.agency in consented_agencies:
        return True, "consent covers their agency"
    return False, "the family's consent does not cover your agency and no legal basis is recorded"


def may_join(agency: str | None, legal_basis: str | None, consented_agencies: frozenset[str]) -> str | None:
    """Why a practitioner may not join the network, or None."""
    if agency is None or agency in consented_agencies or legal_basis:
        return None
    return f"{agency} is outside the family's consent: a legal basis (e.g. Oranga Tamariki Act s66C) must be recorded"
