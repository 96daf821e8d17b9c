"""The escalation watchdog: a loop of its own, apart from the timer runner, that notices when steps run late.

A step is late when its escalation is still open and the step fell due more than the bound ago (the scheduler
stalled, the database was away, the step's handler keeps failing); an escalation message is undelivered when it has
waited in the outbox longer than the bound (Kafka away, the relay stalled). Either sets a metric, logs an error and
publishes one `escalation overdue` alarm per late step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.hub import storage
from services.hub.handlers import ESCALATION_STEP, ESCALATION_TOPICS, publish
from shared.events.hub import EscalationOverdue

log = logging.getLogger(__name__)

STEPS_OVERDUE = Gauge("ctp_escalation_steps_overdue", "Escalation steps due longer ago than the watchdog's bound")
UNDELIVERED = Gauge(
    "ctp_escalation_messages_undelivered", "Escalation messages waiting in the outbox longer than the bound"
)
LAST_CHECK = Gauge("ctp_escalation_watchdog_last_check_timestamp_seconds", "When the watchdog last checked")


class Watchdog:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], interval_seconds: float, bound_seconds: float
    ) -> None:
        self.sessions = sessions
        self.interval = interval_seconds
        self.bound = timedelta(seconds=bound_seconds)

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("escalation watchdog could not check (%s)", type(error).__name__)
            await asyncio.sleep(self.interval)

    async def check(self) -> int:
        """One look: update the gauges and raise an alarm for each newly late step. Returns the alarms raised."""
        now = datetime.now(UTC)
        raised = 0
        async with self.sessions() as session, session.begin():
            overdue = await storage.overdue_counts(session, bound=self.bound, timer_kind=ESCALATION_STEP)
            STEPS_OVERDUE.set(overdue)
            stuck = await storage.undelivered(session, topics=ESCALATION_TOPICS, bound=self.bound)
            UNDELIVERED.set(len(stuck))
            if stuck:
                log.error("%d escalation messages not yet delivered to Kafka after %s", len(stuck), self.bound)
            for escalation in await storage.late_steps(session, bound=self.bound):
                concern = await storage.concern(session, concern_id=escalation.concern_id)
                if concern is None:
                    continue
                log.error(
                    "escalation %s step %d is overdue (due %s)",
                    escalation.escalation_id,
                    escalation.next_step,
                    escalation.next_due_at.isoformat(),
                )
                await publish(
                    session,
                    concern,
                    EscalationOverdue(
                        escalation_id=escalation.escalation_id,
                        concern_id=escalation.concern_id,
                        step=escalation.next_step,
                        reason="step_overdue",
                        due_at=escalation.next_due_at,
                        detected_at=now,
                    ),
                )
                await storage.set_escalation(
                    session, escalation_id=escalation.escalation_id, alarmed_step=escalation.next_step
                )
                raised += 1
        LAST_CHECK.set(time.time())
        return raised
