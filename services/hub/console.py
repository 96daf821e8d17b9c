"""The hub console: the screens hub social workers and duty managers work from, served by the hub service itself.

Server-rendered HTML (Jinja templates in `templates/`, one stylesheet and a few lines of JavaScript in `static/`).
Every page reads and writes through the same functions as the JSON API (`services.hub.api`), so the rules, the
authorisation and the audit rows are the API's. Sign-in keeps the API's bearer token in an HttpOnly, SameSite=Strict
cookie; form posts also need an Origin header naming this service (CSRF). Live updates: PostgreSQL NOTIFY (sent by a
trigger in the changing transaction, ids only) feeds a server-sent event stream; the page then re-fetches its fragment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import jwt
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse

from services.hub import storage
from services.hub.api import (
    HUB_AGENCY,
    READERS,
    ConcernView,
    EscalationView,
    ReferralMade,
    ReferralRequest,
    ScreeningDecision,
    accept_concern,
    child_on_concern,
    concern_id_for,
    concern_of,
    decide_screening,
    escalation_of,
    queue_of,
    refer_concern,
)
from services.hub.domain import (
    AUDITOR,
    CONTACT_CENTRE,
    DUTY_MANAGER,
    DUTY_MANAGER_TARGET,
    POLICE,
    REFERRERS,
    RESPONSE_WINDOWS,
    SOCIAL_WORKER,
    EscalationStatus,
    NotReferable,
    Priority,
    check_referable,
)
from services.hub.handlers import EscalationSettings
from shared.access import audited, in_transaction, role_check
from shared.events.codes import ConcernCategory, NeedDomain, Participation, ReasonCode
from shared.events.hub import ConcernReport
from shared.security import DEV_ISSUER, DEV_KEY_DIR, Principal, TokenVerifier, issue_token
from shared.service import runtime_of

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)

COOKIE = "ctp_console"
QUEUE_SHOWN = 100  # a screen of the most urgent; a backlog beyond it needs more hands, not a longer page
TOKEN_HOURS = 8
NZ = "Pacific/Auckland"
# Scripts and styles from this service only, never framed: a console that shows children's details stays put.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class DevelopmentUser:
    """Someone to sign in as when the hub trusts the local development issuer; never offered otherwise."""

    subject: str
    agency: str
    roles: tuple[str, ...]
    label: str


DEVELOPMENT_USERS = (
    DevelopmentUser("sw-aroha", "childrens-hub", (SOCIAL_WORKER,), "Aroha, hub social worker"),
    DevelopmentUser("dm-tane", "childrens-hub", (DUTY_MANAGER,), "Tane, hub duty manager"),
    DevelopmentUser("auditor-mere", "audit-office", (AUDITOR,), "Mere, auditor (reads only)"),
    DevelopmentUser("teacher-hemi", "education-moe", ("referrer",), "Hemi, teacher (no hub role)"),
)


def development_sign_in(auth_issuer: str) -> bool:
    """Offer the pick-a-user sign-in only when the hub trusts the local development issuer and its key is here."""
    return auth_issuer == DEV_ISSUER and (DEV_KEY_DIR / "dev-issuer.pem").exists()


# Live updates ----------------------------------------------------------------------------------------------------


class ConsoleFeed:
    """Hears `hub_console` notifications (a concern id each) and hands them to every open event stream.

    One LISTEN connection per hub instance; the trigger fires in whichever instance's transaction changed the
    concern, so every console sees every change. After a lost connection each stream is told to refresh everything.
    """

    def __init__(self, database_url: str, *, retry_seconds: float = 1.0) -> None:
        self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._retry_seconds = retry_seconds
        self._streams: set[asyncio.Queue[str]] = set()

    async def run(self) -> None:
        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
                try:
                    await self._listen_on(connection)
                finally:
                    await connection.close()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("console feed lost its connection (%s)", type(error).__name__)
                await asyncio.sleep(self._retry_seconds)

    async def _listen_on(self, connection: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda *_: lost.set())
        await connection.add_listener(storage.CONSOLE_CHANNEL, self._heard)
        self._tell_all("")  # changes made while nobody listened: refresh everything
        await lost.wait()

    def _heard(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            concern_id = str(json.loads(payload)["concern_id"])
        except (ValueError, KeyError, TypeError):
            return
        self._tell_all(concern_id)

    def _tell_all(self, concern_id: str) -> None:
        for stream in self._streams:
            with contextlib.suppress(asyncio.QueueFull):  # a stream that far behind refreshes on its next event
                stream.put_nowait(concern_id)

    @contextlib.asynccontextmanager
    async def stream(self) -> AsyncIterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        self._streams.add(queue)
        try:
            yield queue
        finally:
            self._streams.discard(queue)


# Who is signed in ------------------------------------------------------------------------------------------------


def _token(request: Request) -> tuple[str | None, bool]:
    """The bearer token and whether it came from the console's cookie (which then needs the CSRF check)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(COOKIE), True


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


async def console_principal(request: Request) -> Principal:
    """The signed-in person (cookie or bearer header); anyone else is sent to the sign-in page."""
    token, _ = _token(request)
    if token:
        with contextlib.suppress(jwt.InvalidTokenError):
            return _verifier(request).verify(token)
    raise HTTPException(status.HTTP_303_SEE_OTHER, "sign in first", headers={"Location": "/console/sign-in"})


async def same_origin(request: Request) -> None:
    """CSRF: a form posted with the cookie must come from a page of this service (the Origin header says so).

    The cookie is SameSite=Strict as well; a bearer header cannot be sent by another site, so it needs no check.
    """
    _, from_cookie = _token(request)
    if not from_cookie:
        return
    own = str(request.base_url).rstrip("/")
    origin = request.headers.get("origin") or ""
    if origin != own:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this form must be sent from the hub console itself")


SignedIn = Annotated[Principal, Depends(console_principal)]
SameOrigin = Depends(same_origin)


def _sessions(request: Request) -> Any:
    return runtime_of(request.app).sessions


def _escalation(request: Request) -> EscalationSettings:
    settings: EscalationSettings = request.app.state.escalation
    return settings


# Rendering -------------------------------------------------------------------------------------------------------


def _zone() -> Any:
    try:
        return ZoneInfo(NZ)
    except ZoneInfoNotFoundError:
        return UTC


def nz_time(moment: datetime | str | None) -> str:
    """A time as hub staff read it: New Zealand time, with its zone (a report's times arrive as ISO text)."""
    if isinstance(moment, str):
        written = moment
        try:
            moment = datetime.fromisoformat(written)
        except ValueError:
            return written
    if moment is None:
        return ""
    local = moment.astimezone(_zone())
    return local.strftime("%a %d %b %Y, %H:%M:%S %Z")


def waiting_for(moment: datetime, now: datetime | None = None) -> str:
    minutes = int(((now or datetime.now(UTC)) - moment).total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} days"


def words(code: str | None) -> str:
    """A code as practitioners say it: `very_urgent` → `very urgent`."""
    return (code or "").replace("_", " ")


TARGETS = {
    CONTACT_CENTRE: "National contact centre",
    POLICE: "Police",
    DUTY_MANAGER_TARGET: "Hub duty manager",
}
ESCALATION_WORDS = {
    EscalationStatus.OPEN: "Waiting for acknowledgement",
    EscalationStatus.ACKNOWLEDGED: "Acknowledged",
    EscalationStatus.STOOD_DOWN: "Stood down",
    EscalationStatus.EXHAUSTED: "Exhausted: nobody acknowledged",
}
templates.env.filters["nz_time"] = nz_time
templates.env.filters["waiting_for"] = waiting_for
templates.env.filters["words"] = words
templates.env.globals["ESCALATION_WORDS"] = ESCALATION_WORDS
templates.env.globals["TARGETS"] = TARGETS
templates.env.globals["RESPONSE_WINDOWS"] = {p.value: w for p, w in RESPONSE_WINDOWS.items()}


def _render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    principal: Principal | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    response = templates.TemplateResponse(
        request,
        template,
        {"principal": principal, "hub_staff": bool(principal and principal.has_role(*READERS)), **context},
        status_code=status_code,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


async def _page(
    request: Request,
    principal: Principal,
    template: str,
    work: Callable[[AsyncSession], Awaitable[dict[str, Any]]],
    *,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    """Run a page's reads in one transaction (authorised and audited inside), then render it or the refusal."""
    try:
        context = await in_transaction(_sessions(request), work)
    except HTTPException as refused:
        return _render(
            request,
            "refused.html",
            {"why": refused.detail, "status_code": refused.status_code},
            principal=principal,
            status_code=refused.status_code,
        )
    return _render(request, template, context, principal=principal, status_code=status_code)


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER)


# Sign-in ---------------------------------------------------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return _render(
        request, "sign_in.html", {"development": request.app.state.console_development, "users": DEVELOPMENT_USERS}
    )


@router.post("/sign-in", dependencies=[SameOrigin])
async def sign_in(request: Request) -> Response:
    """Development: pick a user, the local issuer signs their token. Otherwise: the identity provider's token."""
    form = await request.form()
    development = bool(request.app.state.console_development)
    chosen = next((u for u in DEVELOPMENT_USERS if u.subject == form.get("user")), None)
    token = str(form.get("token") or "").strip()
    problem = ""
    if development and chosen is not None:
        token = issue_token(
            subject=chosen.subject, agency=chosen.agency, roles=list(chosen.roles), ttl_seconds=TOKEN_HOURS * 3600
        )
    elif not token:
        problem = "Choose who to sign in as." if development else "Paste the token your identity provider issued."
    if token and not problem:
        try:
            principal = _verifier(request).verify(token)
        except jwt.InvalidTokenError as error:
            problem = f"That token is not accepted: {error}."
    if problem:
        return _render(
            request,
            "sign_in.html",
            {"development": development, "users": DEVELOPMENT_USERS, "problem": problem},
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    response = _see_other("/console" if principal.has_role(*READERS) else "/console/concerns/new")
    response.set_cookie(
        COOKIE,
        token,
        max_age=TOKEN_HOURS * 3600,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/sign-out", dependencies=[SameOrigin])
async def sign_out() -> Response:
    response = _see_other("/console/sign-in")
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


# The queue -------------------------------------------------------------------------------------------------------


async def _queue(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    queue = await queue_of(session, principal, purpose="concern screening", limit=QUEUE_SHOWN)
    return {"queue": queue, "shown": QUEUE_SHOWN, "now": datetime.now(UTC)}


@router.get("")
async def queue_page(request: Request, principal: SignedIn) -> Response:
    """Concerns waiting for screening: the most urgent priority first, then the one waiting longest."""
    return await _page(request, principal, "queue.html", lambda session: _queue(session, principal))


@router.get("/queue")
async def queue_fragment(request: Request, principal: SignedIn) -> Response:
    """The queue's table alone, fetched again when a live update says something changed."""
    return await _page(request, principal, "_queue.html", lambda session: _queue(session, principal))


@router.get("/events")
async def live_updates(request: Request, principal: SignedIn) -> Response:
    """Server-sent events: `concern` with a concern id (or empty: refresh everything) whenever one changes."""

    async def work(session: AsyncSession) -> None:
        allowed, why = role_check(principal, READERS)
        await audited(
            session, principal, allowed=allowed, why=why, action="watch concern queue", purpose="concern screening"
        )

    await in_transaction(_sessions(request), work)
    feed: ConsoleFeed = request.app.state.console_feed

    async def events() -> AsyncIterator[dict[str, str]]:
        async with feed.stream() as changes:
            while True:
                yield {"event": "concern", "data": await changes.get()}

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})


# Raising a concern -----------------------------------------------------------------------------------------------

CATEGORIES = [(c.value, words(c.value).capitalize()) for c in ConcernCategory]
NEEDS = [(n.value, words(n.value).capitalize()) for n in NeedDomain]
# The form's fields, their labels, and what to say when one is missing.
FIELDS: dict[str, tuple[str, str]] = {
    "child_given_names": ("Child's given names", "Enter the child's given names, or the child id"),
    "child_family_name": ("Child's family name", "Enter the child's family name, or the child id"),
    "child_date_of_birth": ("Child's date of birth", "Enter the date of birth as a real date, not in the future"),
    "child_id": ("Child id", "Enter the child id"),
    "child_locality": ("Where the child lives", "Enter where the child lives"),
    "reporter_name": ("Your name", "Enter your name"),
    "reporter_role": ("Your role", "Enter your role"),
    "reporter_phone": ("Your phone number", "Enter a phone number of 6 to 20 digits, spaces or brackets"),
    "categories": ("What kind of concern", "Choose at least one kind of concern"),
    "what_was_seen": ("What you saw or heard", "Describe what you saw or heard"),
    "seen_at": ("When you saw or heard it", "Enter when you saw or heard it (not in the future)"),
    "immediate_danger": ("Is the child in immediate danger now?", "Say whether the child is in immediate danger now"),
    "life_in_danger": ("A life is in danger", "A life in danger is immediate danger: answer yes above"),
    "child_location": ("Where the child is now", "Say where the child is now: it is needed for immediate danger"),
    "injury": ("Injury", "Choose the injury"),
    "alleged_harmer_has_access": ("Can the person said to cause harm reach the child?", "Choose an answer"),
    "caregiver_protective": ("Is a caregiver protecting the child?", "Choose an answer"),
    "support_needs": ("Needs the family has", "Choose from the list"),
}
# Where a rule about several fields points the person: the field to fix.
WHOLE_REPORT_RULES = (
    ("seen_at", "seen_at"),
    ("life in danger", "life_in_danger"),
    ("child_location", "child_location"),
    ("date_of_birth", "child_date_of_birth"),
    ("child_id", "child_given_names"),
)
NESTED = {
    ("child", "given_names"): "child_given_names",
    ("child", "family_name"): "child_family_name",
    ("child", "date_of_birth"): "child_date_of_birth",
    ("child", "child_id"): "child_id",
    ("child", "locality"): "child_locality",
    ("reporter", "name"): "reporter_name",
    ("reporter", "role"): "reporter_role",
    ("reporter", "contact", "phone"): "reporter_phone",
}


def _local_now() -> str:
    return datetime.now(_zone()).strftime("%Y-%m-%dT%H:%M")


def _from_local(text: str) -> str | datetime:
    """`datetime-local` input is New Zealand time; anything unreadable goes on for validation to name."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=_zone())
    except ValueError:
        return text


def _yes_no(answer: str) -> bool | None:
    return {"yes": True, "no": False}.get(answer)


def report_from_form(form: Mapping[str, Any], checked: Mapping[str, list[str]], *, agency: str) -> dict[str, Any]:
    """The form's answers in the shape of `ConcernReport` (the API's body); blank answers are left out."""

    def given(name: str) -> str | None:
        value = str(form.get(name) or "").strip()
        return value or None

    child = {
        "child_id": given("child_id"),
        "given_names": given("child_given_names"),
        "family_name": given("child_family_name"),
        "date_of_birth": given("child_date_of_birth"),
        "locality": given("child_locality"),
    }
    phone = given("reporter_phone")
    report: dict[str, Any] = {
        "child": {k: v for k, v in child.items() if v is not None},
        "reporter": {
            "name": given("reporter_name") or "",
            "agency": agency,
            **({"role": given("reporter_role")} if given("reporter_role") else {}),
            **({"contact": {"phone": phone}} if phone else {}),
        },
        "categories": checked.get("categories", []),
        "what_was_seen": given("what_was_seen") or "",
        "seen_at": _from_local(given("seen_at") or ""),
        "life_in_danger": form.get("life_in_danger") == "yes",
        "child_without_care": form.get("child_without_care") == "yes",
        "self_harm_plan": form.get("self_harm_plan") == "yes",
        "injury": given("injury") or "none",
        "caregiver_protective": given("caregiver_protective") or "unknown",
        "support_needs": checked.get("support_needs", []),
    }
    immediate = _yes_no(str(form.get("immediate_danger") or ""))
    if immediate is not None:
        report["immediate_danger"] = immediate
    harmer = _yes_no(str(form.get("alleged_harmer_has_access") or ""))
    if harmer is not None:
        report["alleged_harmer_has_access"] = harmer
    if given("child_location"):
        report["child_location"] = given("child_location")
    return report


def field_errors(error: ValidationError) -> dict[str, str]:
    """Each validation problem under the form field to fix, in words a practitioner would use."""
    found: dict[str, str] = {}
    for problem in error.errors(include_url=False, include_input=False):
        location = tuple(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if location in NESTED:
            field = NESTED[location]
        elif location and location[0] in FIELDS:
            field = location[0]
        else:
            field = next((f for words_in, f in WHOLE_REPORT_RULES if words_in in message), "what_was_seen")
        # The field's own message says what a right answer looks like; pydantic's words are for integrators.
        found.setdefault(field, FIELDS[field][1])
    return found


def _form_context(
    values: Mapping[str, Any], checked: Mapping[str, list[str]], errors: dict[str, str]
) -> dict[str, Any]:
    return {
        "values": values,
        "checked": checked,
        "errors": errors,
        "fields": FIELDS,
        "categories": CATEGORIES,
        "needs": NEEDS,
    }


@router.get("/concerns/new")
async def concern_form(request: Request, principal: SignedIn) -> Response:
    """Any professional may raise a concern; the hub screens it the moment it arrives."""
    values = {"seen_at": _local_now(), "idempotency_key": str(uuid.uuid4()), "injury": "none"}
    return _render(request, "concern_form.html", _form_context(values, {}, {}), principal=principal)


@router.post("/concerns", dependencies=[SameOrigin])
async def raise_concern(request: Request, principal: SignedIn) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    checked = {name: [str(v) for v in form.getlist(name)] for name in ("categories", "support_needs")}
    try:
        report = ConcernReport.model_validate(report_from_form(values, checked, agency=principal.agency))
    except ValidationError as error:
        return _render(
            request,
            "concern_form.html",
            _form_context(values, checked, field_errors(error)),
            principal=principal,
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    # The key in the form makes a second press of the button (or a resent post) the same concern.
    concern_id = concern_id_for(principal, values.get("idempotency_key") or None)

    async def work(session: AsyncSession) -> str:
        accepted = await accept_concern(
            session, principal, report, concern_id=concern_id, escalation=_escalation(request)
        )
        return accepted.concern_id

    return _see_other(f"/console/concerns/{await in_transaction(_sessions(request), work)}")


# One concern -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepLine:
    """One escalation step as the timeline shows it."""

    step: int
    round: int
    notified: list[str]
    taken_at: datetime
    acknowledge_by: datetime
    overdue: bool


def timeline(escalation: EscalationView, now: datetime) -> list[StepLine]:
    """Each step with its deadline; overdue when no acknowledgement came by it (a later step proves that)."""
    step_seconds = float(escalation.policy.get("step_seconds", 0))
    acknowledged_at = escalation.acknowledged_at
    lines = []
    for n, step in enumerate(escalation.steps):
        deadline = step.taken_at + timedelta(seconds=step_seconds)
        if n < len(escalation.steps) - 1:
            overdue = True
        else:
            match EscalationStatus(escalation.status):
                case EscalationStatus.OPEN:
                    overdue = deadline < now
                case EscalationStatus.EXHAUSTED:
                    overdue = True
                case EscalationStatus.ACKNOWLEDGED:
                    overdue = acknowledged_at is not None and acknowledged_at > deadline
                case EscalationStatus.STOOD_DOWN:
                    overdue = False
        lines.append(
            StepLine(
                step=step.step,
                round=step.round,
                notified=[TARGETS.get(t, words(t)) for t in step.targets],
                taken_at=step.taken_at,
                acknowledge_by=deadline,
                overdue=overdue,
            )
        )
    return lines


async def _concern(session: AsyncSession, principal: Principal, concern_id: str) -> dict[str, Any]:
    concern: ConcernView = await concern_of(session, principal, concern_id, purpose="concern screening")
    escalation = (
        await escalation_of(session, principal, concern_id, purpose="escalation status")
        if concern.escalation_status
        else None
    )
    now = datetime.now(UTC)
    return {
        "concern": concern,
        "escalation": escalation,
        "steps": timeline(escalation, now) if escalation else [],
        "now": now,
        "priorities": [p.value for p in Priority],
        "referable": not why_not_referable(concern),
        "may_refer": principal.has_role(*REFERRERS),
    }


@router.get("/concerns/{concern_id}")
async def concern_page(request: Request, concern_id: str, principal: SignedIn, sent: str | None = None) -> Response:
    """The concern, the rules that fired, confirm or override, and the escalation timeline; `sent=referral` after the
    referral form sent it, to say so."""

    async def view(session: AsyncSession) -> dict[str, Any]:
        return await _concern(session, principal, concern_id) | {"referral_sent": sent == "referral"}

    return await _page(request, principal, "concern.html", view)


@router.get("/concerns/{concern_id}/live")
async def concern_fragment(request: Request, concern_id: str, principal: SignedIn) -> Response:
    """The parts of the concern page that change (priority, status, screenings, escalation), for live updates."""
    return await _page(
        request, principal, "_concern_live.html", lambda session: _concern(session, principal, concern_id)
    )


@router.post("/concerns/{concern_id}/screening", dependencies=[SameOrigin])
async def screen_concern(request: Request, concern_id: str, principal: SignedIn) -> Response:
    """Confirm the tool's priority or override it, with a reason; the same checks as the API's."""
    form = await request.form()
    answers = {k: str(v) for k, v in form.items() if isinstance(v, str) and v.strip()}
    problems: dict[str, str] = {}
    try:
        decision = ScreeningDecision.model_validate(
            {k: answers.get(k) for k in ("decision", "priority", "reason") if answers.get(k)}
        )
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            name = str(problem["loc"][0]) if problem["loc"] else "reason"
            problems.setdefault(name, SCREENING_PROBLEMS.get(name, str(problem["msg"])))
    if not problems:

        async def work(session: AsyncSession) -> Priority:
            return await decide_screening(session, principal, concern_id, decision, escalation=_escalation(request))

        try:
            await in_transaction(_sessions(request), work)
            return _see_other(f"/console/concerns/{concern_id}")
        except HTTPException as refused:
            problems["decision"] = str(refused.detail)

    async def with_problems(session: AsyncSession) -> dict[str, Any]:
        page = await _concern(session, principal, concern_id)
        return page | {"screening_problems": problems, "screening_values": answers}

    return await _page(
        request, principal, "concern.html", with_problems, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY
    )


SCREENING_PROBLEMS = {
    "decision": "Choose confirm or override",
    "priority": "Choose the new priority",
    "reason": "Give your reason (at least 3 characters)",
}


# Referral to the Children's Team ---------------------------------------------------------------------------------

REASONS = [(r.value, words(r.value).capitalize()) for r in ReasonCode]
PARTICIPATION_WORDS = {
    Participation.YES: "Yes, they agreed to take part",
    Participation.NO: "No, they said no",
    Participation.NOT_YET_ASKED: "Not asked yet",
}
PARTICIPATION = [(p.value, PARTICIPATION_WORDS[p]) for p in Participation]
# The referral form's fields (the API's `ReferralRequest`), their labels, and what to say when one is wrong.
REFERRAL_FIELDS: dict[str, tuple[str, str]] = {
    "child_given_names": ("Child's given names", "Enter the child's given names"),
    "child_family_name": ("Child's family name", "Enter the child's family name"),
    "child_date_of_birth": ("Child's date of birth", "Enter the date of birth of a child aged 0 to 17"),
    "reasons": ("Why the child is referred", "Choose at least one reason"),
    "reason_text": ("More about why", "Keep it to 4000 characters"),
    "needs": ("Needs the Children's Team should help with", "Choose at least one need"),
    "consent_participation": ("Has the family agreed to take part?", "Say whether the family agreed to take part"),
    "consent_given_by": ("Who gave the family's answer", "Enter who gave the family's answer"),
    "consent_given_by_relationship": ("Their relationship to the child", "Enter their relationship to the child"),
    "consent_given_at": ("When they answered", "Enter when the family answered, not after now"),
    "referrer_name": ("Your name", "Enter your name"),
}
# A problem with the referral as a whole: shown at the top, with the hub's own words.
WHOLE_REFERRAL = "referral"
REFERRAL_NESTED: dict[tuple[str, ...], str] = {
    ("child", "given_names"): "child_given_names",
    ("child", "family_name"): "child_family_name",
    ("child", "date_of_birth"): "child_date_of_birth",
    ("consent", "participation"): "consent_participation",
    ("consent", "given_by"): "consent_given_by",
    ("consent", "given_by_relationship"): "consent_given_by_relationship",
    ("consent", "given_at"): "consent_given_at",
}
# Where a rule about the referral as a whole points the person: the field to fix, when the form has it.
WHOLE_REFERRAL_RULES = (
    ("given_at", "consent_given_at"),
    ("date_of_birth", "child_date_of_birth"),
    ("0-17", "child_date_of_birth"),
)
CHILD_FIELDS = ("child_given_names", "child_family_name", "child_date_of_birth")


def why_not_referable(concern: ConcernView) -> str:
    """Why this concern cannot become a referral (the API's words), or "" when it can."""
    try:
        check_referable(concern.priority, concern.agency_referral_id)
    except NotReferable as error:
        return str(error)
    return ""


def referral_from_form(form: Mapping[str, Any], checked: Mapping[str, list[str]]) -> dict[str, Any]:
    """The form's answers in the shape of `ReferralRequest` (the API's body); blank answers are left out.

    The child's details go in only when the form asked for them (the concern lacks them).
    """

    def given(name: str) -> str | None:
        value = str(form.get(name) or "").strip()
        return value or None

    consent = {
        "participation": given("consent_participation"),
        "given_by": given("consent_given_by"),
        "given_by_relationship": given("consent_given_by_relationship"),
        "given_at": _from_local(answered) if (answered := given("consent_given_at")) else None,
    }
    body: dict[str, Any] = {
        "referrer_name": given("referrer_name") or "",
        "reasons": checked.get("reasons", []),
        "needs": checked.get("needs", []),
        "consent": {k: v for k, v in consent.items() if v is not None},
        "reason_text": given("reason_text") or "",
    }
    child = {
        "given_names": given("child_given_names"),
        "family_name": given("child_family_name"),
        "date_of_birth": given("child_date_of_birth"),
    }
    if any(child.values()):
        body["child"] = {k: v for k, v in child.items() if v is not None}
    return body


def referral_errors(
    problems: Iterable[tuple[tuple[str, ...], str]], values: Mapping[str, str], *, shown: Collection[str]
) -> dict[str, str]:
    """Each problem (where it is, what it says) under the form field to fix, or as a problem of the whole referral."""
    found: dict[str, str] = {}
    for location, said in problems:
        message = said.removeprefix("Value error, ")
        if location[:2] in REFERRAL_NESTED:
            fields = [REFERRAL_NESTED[location[:2]]]
        elif location and location[0] in REFERRAL_FIELDS:
            fields = [location[0]]
        elif location == ("consent",):  # the family's yes or no needs who gave it and when
            blank = [f for f in ("consent_given_by", "consent_given_at") if not str(values.get(f) or "").strip()]
            fields = blank or ["consent_given_at"]
        elif location == ("child",):  # the concern lacks the child's details and the form left them blank
            fields = list(CHILD_FIELDS)
        else:
            fields = [next((f for words_in, f in WHOLE_REFERRAL_RULES if words_in in message), WHOLE_REFERRAL)]
        for field in fields:
            if field in shown:
                # The field's own message says what a right answer looks like; pydantic's words are for integrators.
                found.setdefault(field, REFERRAL_FIELDS[field][1])
            else:
                found.setdefault(WHOLE_REFERRAL, message[:1].upper() + message[1:])
    # In the order the form asks, so the summary reads top to bottom.
    return {name: found[name] for name in (WHOLE_REFERRAL, *REFERRAL_FIELDS) if name in found}


async def _referral_page(
    session: AsyncSession,
    principal: Principal,
    concern_id: str,
    *,
    values: Mapping[str, Any] | None = None,
    checked: Mapping[str, list[str]] | None = None,
    refusal: str = "",
) -> dict[str, Any]:
    """The referral form for one concern (read and audited as the concern page is), or why it cannot be sent."""
    concern = await concern_of(session, principal, concern_id, purpose="referral")
    if values is None:
        known = concern.report.get("child") or {}
        values = {f"child_{k}": known.get(k) or "" for k in ("given_names", "family_name", "date_of_birth")}
        wanted = {n.value for n in NeedDomain}
        checked = {"needs": [n for n in concern.report.get("support_needs", []) if n in wanted]}
    return {
        "concern": concern,
        "refusal": refusal or why_not_referable(concern),
        "ask_child": child_on_concern(concern.report) is None,
        "values": values,
        "checked": checked or {},
        "errors": {},
        "fields": REFERRAL_FIELDS,
        "reasons": REASONS,
        "needs": NEEDS,
        "participation": PARTICIPATION,
        "hub_agency": HUB_AGENCY,
    }


@router.get("/concerns/{concern_id}/referral")
async def referral_form(request: Request, concern_id: str, principal: SignedIn) -> Response:
    """The form that turns a concern suited to a Children's Team into a referral; hub social workers send it."""
    return await _page(
        request, principal, "referral_form.html", lambda session: _referral_page(session, principal, concern_id)
    )


@router.post("/concerns/{concern_id}/referral", dependencies=[SameOrigin])
async def refer_to_childrens_team(request: Request, concern_id: str, principal: SignedIn) -> Response:
    """Send the referral through the API's own path: its checks, its audit row, its 403, 409 and 422 answers."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    checked = {name: [str(v) for v in form.getlist(name)] for name in ("reasons", "needs")}
    problems: list[tuple[tuple[str, ...], str]] = []
    refusal = ""
    try:
        body = ReferralRequest.model_validate(referral_from_form(values, checked))
    except ValidationError as error:
        problems = [
            (tuple(str(part) for part in p["loc"]), str(p["msg"]))
            for p in error.errors(include_url=False, include_input=False)
        ]
    if not problems:

        async def work(session: AsyncSession) -> ReferralMade | list[dict[str, str]]:
            return await refer_concern(session, principal, concern_id, body)

        try:
            made = await in_transaction(_sessions(request), work)
        except HTTPException as refused:
            if refused.status_code != status.HTTP_409_CONFLICT:
                return _render(
                    request,
                    "refused.html",
                    {"why": refused.detail, "status_code": refused.status_code, "action": True},
                    principal=principal,
                    status_code=refused.status_code,
                )
            refusal = str(refused.detail)
        else:
            if isinstance(made, ReferralMade):
                # The concern keeps the agency referral id and the time; a reload of its page sends nothing again.
                return _see_other(f"/console/concerns/{concern_id}?sent=referral")
            problems = [(tuple(p["field"].split(".")), p["problem"]) for p in made]

    async def again(session: AsyncSession) -> dict[str, Any]:
        page = await _referral_page(session, principal, concern_id, values=values, checked=checked, refusal=refusal)
        shown = [f for f in REFERRAL_FIELDS if page["ask_child"] or f not in CHILD_FIELDS]
        return page | {"errors": referral_errors(problems, values, shown=shown)}

    answer = status.HTTP_409_CONFLICT if refusal else status.HTTP_422_UNPROCESSABLE_ENTITY
    return await _page(request, principal, "referral_form.html", again, status_code=answer)
