"""One child's journey through the running platform, step by step: what `make run` plays at start-up and `make demo`
replays on demand. Everything goes through the services' real interfaces: the agency's Kafka message, then the
practitioners' HTTP calls, each carrying the journey's trace so Zipkin shows it as one trace.

    python -m deploy.local.demo [--port-base 8100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.propagate import inject

from deploy.local import SERVICES
from deploy.local.samples import sample_referral
from shared.agencies import agency_source
from shared.messaging.envelope import Envelope, EnvelopeError, decode_headers
from shared.messaging.topics import outcomes_out, referrals_in
from shared.security import issue_token
from shared.telemetry import setup_tracing

tracer = trace.get_tracer("demo")


def token(subject: str, agency: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(subject=subject, agency=agency, roles=list(roles))}"}


REFERRER = "health-nz"  # the agency whose system refers the child: it sends on its own topic, hears on its own
PANEL = token("demo-panel-member", "childrens-team", "panel_member")
ADMIN = token("demo-administrator", "childrens-team", "administrator")


@dataclass
class Journey:
    """What the demo saw: each step, the outcomes the referrer received, and the journey's trace id."""

    trace_id: str = ""
    child_id: str = ""
    steps: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)


class Platform:
    def __init__(self, port_base: int, bootstrap: str, echo: Callable[[str], None], poll_seconds: float) -> None:
        self.http = {
            s: httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_base + n}", timeout=10)
            for n, s in enumerate(SERVICES, 1)
        }
        self.bootstrap = bootstrap
        self.echo = echo
        self.poll_seconds = poll_seconds

    async def close(self) -> None:
        for client in self.http.values():
            await client.aclose()

    async def call(self, service: str, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        carrier: dict[str, str] = {}
        inject(carrier)  # the journey's trace travels with every request
        response = await self.http[service].request(method, path, headers=headers | carrier, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{service} {method} {path}: {response.status_code} {response.text}")
        return response.json()

    async def until(self, what: str, check: Callable[[], Awaitable[Any]], within: float = 60) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            if result := await check():
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the demo waited {within}s for: {what}")
            await asyncio.sleep(self.poll_seconds)


async def play(
    port_base: int,
    bootstrap: str,
    echo: Callable[[str], None] = print,
    after_step: Callable[[str], Awaitable[None]] | None = None,
    poll_seconds: float = 0.2,
) -> Journey:
    """Play the journey; `after_step` runs after each step (tests use it to break things part-way, the benchmark to
    time each stage); `poll_seconds` is how often it looks at the services' HTTP APIs while waiting."""
    journey = Journey()
    platform = Platform(port_base, bootstrap, echo, poll_seconds)
    unique = uuid.uuid4().hex[:6]
    lead = f"demo-lead-{unique}"
    manager = f"demo-manager-{unique}"
    as_lead = token(lead, "oranga-tamariki", "lead_professional")
    as_manager = token(manager, "oranga-tamariki", "manager")

    async def step(text: str) -> None:
        journey.steps.append(text)
        echo(f"  ✔ {text}")
        if after_step is not None:
            await after_step(text)

    outcomes = AIOKafkaConsumer(outcomes_out(REFERRER), bootstrap_servers=bootstrap, enable_auto_commit=False)
    await outcomes.start()
    await outcomes.seek_to_end()
    try:
        with tracer.start_as_current_span("child's journey (demo)") as root:
            journey.trace_id = format(root.get_span_context().trace_id, "032x")
            practitioner = {
                "name": "Demo Lead",
                "agency": "oranga-tamariki",
                "discipline": "social worker",
                "needs": ["education", "parenting_capacity"],
                "locality": "Napier",
                "max_caseload": 10,
                "manager_id": manager,
            }
            await platform.call("assignment", "PUT", f"/practitioners/{lead}", ADMIN, json=practitioner)

            referral = sample_referral(
                f"DEMO-{unique}",
                agency=REFERRER,
                involved_practitioners=[
                    {"id": lead, "name": "Demo Lead", "role": "social worker", "agency": "oranga-tamariki"}
                ],
            )
            envelope = Envelope(event=referral, source=agency_source(REFERRER), subject=referral.agency_referral_id)
            headers = envelope.headers()
            inject(headers)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
            await producer.start()
            try:
                await producer.send_and_wait(
                    referrals_in(REFERRER),
                    envelope.body(),
                    key=envelope.key,
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            finally:
                await producer.stop()
            await step(f"{REFERRER} referred a child ({referral.agency_referral_id})")

            received = await _outcome(outcomes, referral.agency_referral_id, journey, "received")
            referral_id, journey.child_id = received["referral_id"], received["child_id"]
            await step(f"referral received; child id {journey.child_id}")

            await platform.until("the referral in the panel's queue", lambda: _queued(platform, referral_id))
            accept = {
                "decision": "accept",
                "reason": "Attendance and parenting support meet the threshold",
                "needs_profile": ["education", "parenting_capacity"],
                "recommendations_for_lead": ["school_engagement", "parenting_programme"],
            }
            await platform.call("panel", "POST", f"/reviews/{referral_id}/decision", PANEL, json=accept)
            await _outcome(outcomes, referral.agency_referral_id, journey, "accepted")
            await step("panel accepted (the family had already agreed to take part)")

            proposal = await platform.until("a lead proposed to the manager", lambda: _proposal(platform, as_manager))
            await step(f"lead professional {proposal['practitioner_id']} proposed (score {proposal['score']})")
            await platform.call("assignment", "POST", f"/proposals/{proposal['proposal_id']}/confirm", as_manager)
            await _outcome(outcomes, referral.agency_referral_id, journey, "lead_professional_assigned")
            await step("manager confirmed; the lead professional is assigned")

            case = await platform.until("the case opened", lambda: _case(platform, journey.child_id, as_lead))
            case_id = case["case_id"]
            await step(f"case {case_id} opened at the assess stage")
            teacher = {
                "member_id": f"demo-teacher-{unique}",
                "kind": "practitioner",
                "name": "Whaea Demo",
                "agency": "education-moe",
            }
            # The plans service refuses anyone outside the family's consent until it has heard that consent.
            await platform.until(
                "the family's consent to reach the plans service", lambda: _join(platform, case_id, as_lead, teacher)
            )
            await platform.call(
                "plans",
                "POST",
                f"/cases/{case_id}/members",
                as_lead,
                json={"member_id": f"demo-mum-{unique}", "kind": "whanau", "name": "Mere"},
            )
            await step("Child's Action Network: child, lead, teacher, mum")
            assessment = {
                "domains": {
                    "child_wellbeing.education": {
                        "strengths": "Loves reading",
                        "needs": "Attendance",
                        "need_identified": True,
                    },
                    "caregiver_capacity.guidance_and_boundaries": {"needs": "Morning routine", "need_identified": True},
                },
                "child_voice": "I want to walk to school with my friends.",
                "whanau_view": "Mum wants help with mornings.",
            }
            await platform.call("plans", "PUT", f"/cases/{case_id}/assessment", as_lead, json=assessment)
            await platform.call("plans", "POST", f"/cases/{case_id}/assessment/complete", as_lead)
            await step("common assessment completed with the child's voice and the whānau's view")
            goal = {
                "description": "At school every day",
                "need": "child_wellbeing.education",
                "set_with_child": True,
                "set_with_whanau": True,
                "actions": [
                    {
                        "description": "Walking school bus",
                        "owner_member_id": teacher["member_id"],
                        "due_on": str(date.today() + timedelta(days=14)),
                    }
                ],
            }
            plan = await platform.call("plans", "POST", f"/cases/{case_id}/plan", as_lead, json={"goals": [goal]})
            await platform.call("plans", "POST", f"/cases/{case_id}/plan/submit", as_lead)
            await platform.until("the plan in the panel's queue", lambda: _plan_queued(platform, plan["plan_id"]))
            await platform.call(
                "panel", "POST", f"/plan-reviews/{plan['plan_id']}", PANEL, json={"outcome": "endorsed"}
            )
            await platform.until("the plan endorsed", lambda: _plan_status(platform, case_id, as_lead, "endorsed"))
            await step("Child's Plan written with the child and whānau, endorsed by the panel")
            await platform.call("plans", "POST", f"/cases/{case_id}/implementation", as_lead)
            case = await platform.call("plans", "GET", f"/cases/{case_id}", as_lead)
            as_teacher = token(teacher["member_id"], "education-moe", "practitioner")
            for action in case["plan"]["actions"]:
                await platform.call("plans", "POST", f"/actions/{action['action_id']}/done", as_teacher)
            await step("plan implemented; the teacher's action is done")
            await platform.call(
                "plans",
                "POST",
                f"/cases/{case_id}/reviews",
                as_lead,
                json={"outcome": "close", "notes": "Attending every day; mornings are calm."},
            )
            exit_body = {"reason": "goals_achieved", "handover_to": ["universal_services"], "celebration": "Shared kai"}
            await platform.call("plans", "POST", f"/cases/{case_id}/exit", as_lead, json=exit_body)
            await _outcome(outcomes, referral.agency_referral_id, journey, "case_closed")
            await step("reviewed and closed: goals achieved, handed over to universal services, celebrated")

            concern = {
                "child": {"child_id": journey.child_id},
                "reporter": {
                    "name": "Demo Teacher",
                    "agency": "education-moe",
                    "role": "teacher",
                    "contact": {"phone": "+64 4 555 0101"},
                },
                "categories": ["physical_harm"],
                "what_was_seen": "A younger cousin says a visitor hit them and they are afraid to go home tonight.",
                "seen_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "immediate_danger": True,
                "child_location": "School office",
            }
            teacher_token = token(f"demo-teacher-{unique}", "education-moe", "practitioner")
            raised = await platform.call("hub", "POST", "/concerns", teacher_token, json=concern)
            await step(f"a teacher raised a concern of immediate danger; screened {raised.get('priority', 'critical')}")
            as_hub = token("demo-hub-worker", "childrens-hub", "hub_social_worker")
            escalation = await platform.until(
                "the contact centre's acknowledgement",
                lambda: _acknowledged(platform, raised["concern_id"], as_hub),
            )
            await step(
                f"escalated at intake to the national contact centre; acknowledged by {escalation['acknowledged_by']}"
                " (the contact-centre SIMULATOR)"
            )
    finally:
        await outcomes.stop()
        await platform.close()
    return journey


async def _outcome(
    outcomes: AIOKafkaConsumer, agency_referral_id: str, journey: Journey, wanted: str
) -> dict[str, Any]:
    """Read the referrer's outcomes until `wanted` arrives (the referrer hears every stage)."""
    async with asyncio.timeout(60):
        while True:
            record = await outcomes.getone()
            try:
                envelope = Envelope.decode(decode_headers(record.headers), record.value or b"")
            except EnvelopeError:
                continue
            body = envelope.event.model_dump(mode="json")
            if body.get("agency_referral_id") != agency_referral_id:
                continue
            journey.outcomes.append(body["outcome"])
            if body["outcome"] == wanted:
                return body


async def _join(platform: Platform, case_id: str, as_lead: dict[str, str], member: dict[str, str]) -> bool:
    response = await platform.http["plans"].post(f"/cases/{case_id}/members", json=member, headers=as_lead)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"plans POST /cases/{case_id}/members: {response.status_code} {response.text}")
    return response.status_code == 201


async def _queued(platform: Platform, referral_id: str) -> bool:
    queue = await platform.call("panel", "GET", "/queue", PANEL)
    return any(item["referral_id"] == referral_id for item in queue)


async def _proposal(platform: Platform, as_manager: dict[str, str]) -> dict[str, Any] | None:
    proposals = await platform.call("assignment", "GET", "/proposals", as_manager)
    return proposals[0] if proposals else None


async def _case(platform: Platform, child_id: str, as_lead: dict[str, str]) -> dict[str, Any] | None:
    response = await platform.http["plans"].get(f"/children/{child_id}/case", headers=as_lead)
    return response.json() if response.status_code == 200 else None


async def _plan_queued(platform: Platform, plan_id: str) -> bool:
    queue = await platform.call("panel", "GET", "/plan-reviews", PANEL)
    return any(item["plan_id"] == plan_id for item in queue)


async def _plan_status(platform: Platform, case_id: str, as_lead: dict[str, str], wanted: str) -> bool:
    case = await platform.call("plans", "GET", f"/cases/{case_id}", as_lead)
    return bool(case["plan"] and case["plan"]["status"] == wanted)


async def _acknowledged(platform: Platform, concern_id: str, as_hub: dict[str, str]) -> dict[str, Any] | None:
    escalation: dict[str, Any] = await platform.call("hub", "GET", f"/concerns/{concern_id}/escalation", as_hub)
    return escalation if escalation.get("acknowledged_at") else None


def zipkin_link(trace_id: str) -> str:
    return f"{os.environ.get('ZIPKIN_URL', 'http://127.0.0.1:29411')}/zipkin/traces/{trace_id}"


async def demo(port_base: int) -> Journey:
    print("\nA child's journey through the Children's Teams platform (demo):")
    journey = await play(port_base, os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:29092"))
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    print(f"  outcomes the referrer received: {', '.join(journey.outcomes)}")
    print(f"  the journey's trace: {zipkin_link(journey.trace_id)}\n")
    return journey


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.demo")
    parser.add_argument("--port-base", type=int, default=8100)
    args = parser.parse_args()
    zipkin = os.environ.get("ZIPKIN_URL", "http://127.0.0.1:29411")
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "zipkin")
    os.environ.setdefault("OTEL_EXPORTER_ZIPKIN_ENDPOINT", f"{zipkin}/api/v2/spans")
    setup_tracing("demo")
    asyncio.run(demo(args.port_base))


if __name__ == "__main__":
    main()
