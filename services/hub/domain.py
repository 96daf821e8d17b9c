"""The hub's rules: the explainable screening tool, who may change a priority, and the escalation policy (no I/O).

Screening is in the spirit of Structured Decision Making: each rule reads facts a reporter gave, says in plain words
why it matters, and sets a response priority; the concern's priority is the highest any rule set, and the rules
that fired are its explanation. docs/screening-rules.md is generated from RULES (a test keeps them equal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from shared.events.codes import ConcernCategory, NeedDomain


class Priority(StrEnum):
    """Response priorities, most urgent first (the order of the members is the order of urgency)."""

    CRITICAL = "critical"
    VERY_URGENT = "very_urgent"
    URGENT = "urgent"
    CHILDRENS_TEAM = "childrens_team"
    NO_FURTHER_ACTION = "no_further_action"

    @property
    def rank(self) -> int:
        """0 is the most urgent; the queue sorts by it."""
        return list(Priority).index(self)

    def above(self, other: Priority) -> bool:
        return self.rank < other.rank


RESPONSE_WINDOWS = {
    Priority.CRITICAL: "now: the national contact centre at once, and Police when a life is in danger",
    Priority.VERY_URGENT: "within 48 hours",
    Priority.URGENT: "within 10 working days",
    Priority.CHILDRENS_TEAM: "offer the family a referral to the Children's Team",
    Priority.NO_FURTHER_ACTION: "no further action; the concern is kept as information",
}

HARM = frozenset(
    {
        ConcernCategory.PHYSICAL_HARM,
        ConcernCategory.SEXUAL_HARM,
        ConcernCategory.EMOTIONAL_HARM,
        ConcernCategory.NEGLECT,
        ConcernCategory.FAMILY_VIOLENCE,
    }
)
ABUSE = frozenset(
    {
        ConcernCategory.PHYSICAL_HARM,
        ConcernCategory.SEXUAL_HARM,
        ConcernCategory.EMOTIONAL_HARM,
        ConcernCategory.FAMILY_VIOLENCE,
    }
)
# Where a caregiver who protects the child makes support, not investigation, the right answer.
LOWER_HARM = frozenset({ConcernCategory.NEGLECT, ConcernCategory.EMOTIONAL_HARM, ConcernCategory.OTHER})
INFANT_YEARS = 2
SUPERVISION_AGE = 14  # Crimes Act 1961 s 10B: a child under 14 is not to be left without reasonable supervision
REPEAT_CONCERNS = 2


@dataclass(frozen=True, slots=True)
class ConcernFacts:
    """What the screening rules read. `earlier_concerns` counts the hub's concerns about the child in the last year."""

    categories: frozenset[ConcernCategory]
    immediate_danger: bool
    life_in_danger: bool = False
    injury: str = "none"  # none | minor | serious
    alleged_harmer_has_access: bool | None = None
    child_without_care: bool = False
    self_harm_plan: bool = False
    caregiver_protective: str = "unknown"  # yes | no | unknown
    support_needs: frozenset[NeedDomain] = frozenset()
    child_age_years: int | None = None
    earlier_concerns: int = 0

    @property
    def infant(self) -> bool:
        return self.child_age_years is not None and self.child_age_years < INFANT_YEARS


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    priority: Priority
    says: str  # the rule in plain words, for practitioners
    applies: Callable[[ConcernFacts], bool] = field(repr=False)
    police: bool = False  # a critical rule that also means telling Police


RULES: tuple[Rule, ...] = (
    Rule(
        "life_in_danger",
        Priority.CRITICAL,
        "The reporter believes the child's life, or someone's life with the child, is in danger now.",
        lambda f: f.life_in_danger,
        police=True,
    ),
    Rule(
        "immediate_danger",
        Priority.CRITICAL,
        "The reporter says the child is in immediate danger now.",
        lambda f: f.immediate_danger,
    ),
    Rule(
        "serious_injury_to_infant",
        Priority.CRITICAL,
        f"A child under {INFANT_YEARS} has a serious injury.",
        lambda f: f.infant and f.injury == "serious",
    ),
    Rule(
        "young_child_without_care",
        Priority.CRITICAL,
        f"A child under {SUPERVISION_AGE} (or of unknown age) has been left without anyone caring for them.",
        lambda f: f.child_without_care and (f.child_age_years is None or f.child_age_years < SUPERVISION_AGE),
    ),
    Rule(
        "self_harm_with_plan",
        Priority.CRITICAL,
        "The child has harmed themselves or talks of doing so, and has a plan or the means.",
        lambda f: f.self_harm_plan,
    ),
    Rule(
        "sexual_harm",
        Priority.VERY_URGENT,
        "The concern is about sexual harm.",
        lambda f: ConcernCategory.SEXUAL_HARM in f.categories,
    ),
    Rule(
        "serious_injury",
        Priority.VERY_URGENT,
        "The child has a serious injury.",
        lambda f: f.injury == "serious",
    ),
    Rule(
        "harmer_has_access",
        Priority.VERY_URGENT,
        "Abuse or family violence is reported and the person said to cause it can still reach the child.",
        lambda f: bool(f.categories & ABUSE) and f.alleged_harmer_has_access is True,
    ),
    Rule(
        "harm_to_infant",
        Priority.VERY_URGENT,
        f"Harm of any kind is reported to a child under {INFANT_YEARS}.",
        lambda f: f.infant and bool(f.categories & HARM),
    ),
    Rule(
        "harm_reported",
        Priority.URGENT,
        "Physical, sexual or emotional harm, neglect, or family violence is reported.",
        lambda f: bool(f.categories & HARM),
    ),
    Rule(
        "injury",
        Priority.URGENT,
        "The child has a minor injury.",
        lambda f: f.injury == "minor",
    ),
    Rule(
        "self_harm",
        Priority.URGENT,
        "The child has harmed themselves or talks of doing so (without a plan or the means).",
        lambda f: ConcernCategory.SELF_HARM in f.categories,
    ),
    Rule(
        "repeat_concerns",
        Priority.URGENT,
        f"The hub has had {REPEAT_CONCERNS} or more concerns about this child in the last 12 months.",
        lambda f: f.earlier_concerns >= REPEAT_CONCERNS,
    ),
    Rule(
        "family_needs_support",
        Priority.CHILDRENS_TEAM,
        "The family has needs a Children's Team could help with (health, education, housing and the like).",
        lambda f: bool(f.support_needs),
    ),
)

# Applied after the rules above, and only to what they left: a protective caregiver turns a lower-harm concern with
# no other warning sign into an offer of support.
PROTECTIVE_CAREGIVER = Rule(
    "protective_caregiver",
    Priority.CHILDRENS_TEAM,
    "Mitigating: only neglect, emotional harm or other worries are reported, no rule above more urgent than "
    "'harm_reported' fired, and a caregiver is protecting the child: offer the Children's Team instead.",
    lambda f: f.caregiver_protective == "yes" and bool(f.categories) and f.categories <= LOWER_HARM,
)
NO_RULE_FIRED = "no_safety_concern"


@dataclass(frozen=True, slots=True)
class Screening:
    priority: Priority
    rules_fired: tuple[str, ...]
    police: bool

    @property
    def critical(self) -> bool:
        return self.priority is Priority.CRITICAL


def screen(facts: ConcernFacts) -> Screening:
    """The response priority and why: the highest priority any rule sets, and every rule that fired."""
    fired = [rule for rule in RULES if rule.applies(facts)]
    if not fired:
        return Screening(Priority.NO_FURTHER_ACTION, (NO_RULE_FIRED,), police=False)
    priority = min((rule.priority for rule in fired), key=lambda p: p.rank)
    codes = [rule.code for rule in fired]
    if codes == ["harm_reported"] and PROTECTIVE_CAREGIVER.applies(facts):
        priority = Priority.CHILDRENS_TEAM
        codes.append(PROTECTIVE_CAREGIVER.code)
    return Screening(priority, tuple(codes), police=any(rule.police for rule in fired))


def explain(codes: Sequence[str]) -> list[dict[str, str]]:
    """Each fired rule in plain words, for the concern's detail view."""
    known = {rule.code: rule for rule in (*RULES, PROTECTIVE_CAREGIVER)}
    explained = []
    for code in codes:
        rule = known.get(code)
        if rule is not None:
            explained.append({"rule": code, "priority": rule.priority.value, "says": rule.says})
        else:
            explained.append({"rule": code, "priority": Priority.NO_FURTHER_ACTION.value, "says": NO_RULE_SAYS})
    return explained


NO_RULE_SAYS = "No rule fired: nothing reported puts the child's safety at risk. The concern is kept as information."


def age_on(born: date | None, day: date) -> int | None:
    if born is None:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


# Who may change a priority ---------------------------------------------------------------------------------------

SOCIAL_WORKER = "hub_social_worker"
DUTY_MANAGER = "hub_duty_manager"
AUDITOR = "auditor"


class NotAllowed(Exception):
    """A change the caller's role does not permit (HTTP 403)."""


def check_override(current: Priority, new: Priority, roles: frozenset[str]) -> None:
    """Hub social workers confirm or override; lowering a critical concern needs a duty manager."""
    if not roles & {SOCIAL_WORKER, DUTY_MANAGER}:
        raise NotAllowed("screening needs the role hub_social_worker or hub_duty_manager")
    if current is Priority.CRITICAL and new is not Priority.CRITICAL and DUTY_MANAGER not in roles:
        raise NotAllowed("lowering a critical concern needs the role hub_duty_manager")


# Referral to the Children's Team ---------------------------------------------------------------------------------

REFERRERS = (SOCIAL_WORKER,)  # who may turn a concern into a referral


class NotReferable(Exception):
    """A concern that cannot become a referral, or already is one (HTTP 409)."""


def check_referable(priority: str, agency_referral_id: str | None) -> None:
    """A concern becomes a referral once, and only while its priority is childrens_team."""
    if agency_referral_id:
        raise NotReferable("this concern is already a referral")
    if priority != Priority.CHILDRENS_TEAM:
        raise NotReferable(f"only a concern screened as childrens_team becomes a referral (it is {priority})")


# Escalation ------------------------------------------------------------------------------------------------------


class EscalationStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    STOOD_DOWN = "stood_down"
    EXHAUSTED = "exhausted"


CONTACT_CENTRE, POLICE, DUTY_MANAGER_TARGET = "contact_centre", "police", "duty_manager"
# Notify the contact centre; no acknowledgement by the deadline: again, and the hub duty manager; then Police.
DEFAULT_STEPS: tuple[tuple[str, ...], ...] = ((CONTACT_CENTRE,), (CONTACT_CENTRE, DUTY_MANAGER_TARGET), (POLICE,))


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Frozen into the escalation when it starts (as JSON), so a change of settings never alters a running chain."""

    steps: tuple[tuple[str, ...], ...]
    step_seconds: float
    rounds: int
    police_at_start: bool = False

    @property
    def total_steps(self) -> int:
        return len(self.steps) * self.rounds

    def step(self, number: int) -> tuple[int, tuple[str, ...]] | None:
        """(round, targets) of step `number` (0 is the notification at intake), or None past the last step."""
        if number < 0 or number >= self.total_steps:
            return None
        targets = self.steps[number % len(self.steps)]
        if number == 0 and self.police_at_start and POLICE not in targets:
            targets = (*targets, POLICE)
        return number // len(self.steps) + 1, targets

    def snapshot(self) -> dict[str, object]:
        return {
            "steps": [list(s) for s in self.steps],
            "step_seconds": self.step_seconds,
            "rounds": self.rounds,
            "police_at_start": self.police_at_start,
        }

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, object]) -> EscalationPolicy:
        steps = snapshot["steps"]
        assert isinstance(steps, list)
        return cls(
            steps=tuple(tuple(str(t) for t in s) for s in steps),
            step_seconds=float(str(snapshot["step_seconds"])),
            rounds=int(str(snapshot["rounds"])),
            police_at_start=bool(snapshot.get("police_at_start", False)),
        )


class AlreadySettled(Exception):
    """The escalation is no longer open (acknowledged, stood down or exhausted)."""


def acknowledge(status: EscalationStatus) -> EscalationStatus:
    """Acknowledgement stops an open chain; a late one after exhaustion is still recorded; a second one changes
    nothing (the caller treats AlreadySettled as an idempotent no-op)."""
    match status:
        case EscalationStatus.OPEN | EscalationStatus.EXHAUSTED:
            return EscalationStatus.ACKNOWLEDGED
        case EscalationStatus.ACKNOWLEDGED | EscalationStatus.STOOD_DOWN:
            raise AlreadySettled(f"escalation is {status}")


def stand_down(status: EscalationStatus) -> EscalationStatus:
    match status:
        case EscalationStatus.OPEN | EscalationStatus.EXHAUSTED:
            return EscalationStatus.STOOD_DOWN
        case EscalationStatus.ACKNOWLEDGED | EscalationStatus.STOOD_DOWN:
            raise AlreadySettled(f"escalation is {status}")


def notification_id(escalation_id: str, step: int, target: str) -> str:
    """The idempotency key of one notification: the same step to the same target is always the same message."""
    return f"{escalation_id}/{step}/{target}"


# The practitioners' page -----------------------------------------------------------------------------------------


def rules_markdown() -> str:
    """docs/screening-rules.md, generated from RULES (`python -m services.hub.domain > docs/screening-rules.md`)."""
    lines = [
        "# The hub's screening rules",
        "",
        "<!-- Generated from services/hub/domain.py by `python -m services.hub.domain`; a test keeps them equal. -->",
        "",
        "The hub screens every concern with these rules the moment it arrives. Each rule reads facts the reporter",
        "gave and sets a response priority. The concern's priority is the most urgent one any rule set, and the",
        "rules that fired are shown to the hub social worker as the explanation. A hub social worker then confirms",
        "or overrides the priority with a reason; lowering a critical concern needs the hub duty manager. A concern",
        "that screens as critical is escalated at once, before anyone has looked at it.",
        "",
        "## Response priorities",
        "",
        "| priority | what happens |",
        "|---|---|",
    ]
    lines += [f"| {p.value} | {RESPONSE_WINDOWS[p]} |" for p in Priority]
    lines += ["", "## Rules", "", "| rule | sets | in plain words |", "|---|---|---|"]
    for rule in RULES:
        police = " Police are told at once as well as the contact centre." if rule.police else ""
        lines.append(f"| `{rule.code}` | {rule.priority.value} | {rule.says}{police} |")
    lines.append(
        f"| `{PROTECTIVE_CAREGIVER.code}` | {PROTECTIVE_CAREGIVER.priority.value} | {PROTECTIVE_CAREGIVER.says} |"
    )
    lines.append(f"| `{NO_RULE_FIRED}` | {Priority.NO_FURTHER_ACTION.value} | {NO_RULE_SAYS} |")
    lines += [
        "",
        "## Terms",
        "",
        f"- *Infant*: a child under {INFANT_YEARS} on the day the concern arrives (from the date of birth if known).",
        "- *Harm*: the categories physical harm, sexual harm, emotional harm, neglect and family violence.",
        "- *Abuse or family violence*: physical, sexual or emotional harm, or family violence.",
        "- *Earlier concerns*: concerns the hub received about the same child id in the 12 months before this one.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(rules_markdown(), end="")
