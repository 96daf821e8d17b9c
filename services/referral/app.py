"""Wiring of the referral service: its settings, the events it publishes and handles, its routes."""

from fastapi import FastAPI

from services.referral import handlers
from services.referral.api import router
from shared.service import Subscription, create_service
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service: str = "referral"
    http_port: int = 8101


SUBSCRIPTIONS = [
    # Agencies' referrals, consent changes and withdrawals; unreadable input is answered with a rejection.
    Subscription(
        consumer="intake",
        topics=handlers.INGRESS,
        handlers=handlers.register,
        reject=handlers.reject_submission,
    ),
    # The panel's decisions and the lead's assignment: the referral's state, and the referrer's outcome.
    Subscription(consumer="decisions", topics=handlers.DECISIONS, handlers=handlers.register_decisions),
]


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service(
        settings or Settings(),
        title="Referral service",
        subscriptions=SUBSCRIPTIONS,
        routers=[router],
    )
