"""Settings come from the environment, and the retry policy backs off as documented."""

from __future__ import annotations

import ssl

import pytest
from faststream.security import SASLPlaintext, SASLScram512

from services.hub.app import Settings as HubSettings
from shared.messaging.broker import client_security, kafka_security
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


def test_the_kafka_clients_authenticate_as_the_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kafka_security(HubSettings()) is None  # the local stack: PLAINTEXT

    monkeypatch.setenv("CTP_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CTP_KAFKA_SASL_USERNAME", "svc.hub")
    monkeypatch.setenv("CTP_KAFKA_SASL_PASSWORD", "not-a-real-secret")
    settings = HubSettings()
    assert "not-a-real-secret" not in repr(settings)  # a secret never reaches a log line by accident
    security = kafka_security(settings)
    assert isinstance(security, SASLScram512)
    assert (security.username, security.password, security.use_ssl) == ("svc.hub", "not-a-real-secret", True)
    assert security.ssl_context is not None and security.ssl_context.verify_mode == ssl.CERT_REQUIRED

    monkeypatch.setenv("CTP_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("CTP_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    plain = kafka_security(HubSettings())
    assert isinstance(plain, SASLPlaintext) and not plain.use_ssl

    monkeypatch.setenv("CTP_KAFKA_SASL_USERNAME", "")
    with pytest.raises(ValueError, match="needs CTP_KAFKA_SASL_USERNAME"):
        kafka_security(HubSettings())


def test_aiokafka_clients_outside_the_broker_get_the_same_security(monkeypatch: pytest.MonkeyPatch) -> None:
    assert client_security(HubSettings()) == {}
    monkeypatch.setenv("CTP_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CTP_KAFKA_SASL_USERNAME", "svc.reporting")
    monkeypatch.setenv("CTP_KAFKA_SASL_PASSWORD", "not-a-real-secret")
    options = client_security(HubSettings())
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc.reporting",
        "sasl_plain_password": "not-a-real-secret",
    }
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
