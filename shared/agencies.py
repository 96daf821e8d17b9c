"""Agencies registered with the Children's Team.

Each has Kafka topics of its own (`shared.messaging.topics`): production ACLs let an agency write only its ingress
topics and read only its outcomes, so the topic a message arrived on says which agency sent it. A referral from, or
sharing with, any other agency is refused. Adding one: add its code here, create its topics, grant its principal.
"""

AGENCIES: frozenset[str] = frozenset(
    {
        "health-nz",
        "police-nz",
        "education-moe",
        "oranga-tamariki",
        "msd",
        "kainga-ora",
        "ara-poutama",
        "justice",
        "whanau-ora",
        "ngo-barnardos",
        "ngo-plunket",
        "iwi-provider",
        "childrens-team",
        "childrens-hub",
    }
)


def agency_source(agency: str) -> str:
    """The CloudEvents `ce_source` an agency's system publishes with."""
    return f"/agencies/{agency}"


def sender_problems(*, sender: str, source: str, named: str) -> list[dict[str, str]]:
    """An agency acts only in its own name: `sender` is the agency whose topic the message came in on; its `ce_source`
    and the agency the body names must both be that agency."""
    problems = []
    if source != agency_source(sender):
        problems.append({"field": "ce_source", "problem": f"must be {agency_source(sender)} on this agency's topic"})
    if named != sender:
        problems.append({"field": "agency", "problem": "does not match the sending agency"})
    return problems
