"""Settings come from the environment, and the retry policy backs off as documented."""

from __future__ import annotations

import pytest

from services.hub.app import Settings as HubSettings
from shared.messaging.consumer import RetryPolicy


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "broker-1:9092")
    monkeypatch.setenv("CTP_DATABASE_URL", "postgresql+asyncpg://hub:secret@db:5432/childrensteams")
    monkeypatch.setenv("CTP_RETRY_ATTEMPTS", "7")
    settings = HubSettings()
    assert settings.kafka_bootstrap == "broker-1:9092"
    assert settings.database_url.endswith("@db:5432/childrensteams")
    assert settings.retry_attempts == 7
    assert settings.service == "hub"
    assert settings.db_schema == "hub"
    assert settings.source == "/services/hub"


def test_retries_back_off_four_times_longer_each_time_up_to_a_cap() -> None:
    policy = RetryPolicy(attempts=5, base_seconds=1.0, max_delay_seconds=60.0)
    assert [policy.delay_before(n) for n in range(2, 6)] == [1.0, 4.0, 16.0, 60.0]
