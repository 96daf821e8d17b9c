"""The one way to build a Kafka broker: durable producer settings, authentication, tracing and Prometheus metrics."""

import ssl
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import REGISTRY, CollectorRegistry

from shared.settings import ServiceSettings

SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def kafka_security(settings: ServiceSettings) -> BaseSecurity | None:
    """The clients' security from the settings: None for PLAINTEXT; TLS verified against the CA file for SSL and
    SASL_SSL; SASL credentials for the SASL protocols."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    tls = protocol.endswith("SSL")
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if tls else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context)
    if not settings.kafka_sasl_username:
        raise ValueError(f"{protocol} needs CTP_KAFKA_SASL_USERNAME and CTP_KAFKA_SASL_PASSWORD")
    return SASL[settings.kafka_sasl_mechanism](
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=tls,
    )


def client_security(settings: ServiceSettings) -> dict[str, Any]:
    """The same security as keyword arguments for aiokafka's own clients (admin, or a consumer outside the broker)."""
    security = kafka_security(settings)
    if security is None:
        return {}
    options: dict[str, Any] = {
        "security_protocol": settings.kafka_security_protocol,
        "ssl_context": security.ssl_context,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def make_broker(
    bootstrap: str,
    *,
    client_id: str,
    security: BaseSecurity | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> KafkaBroker:
    # aiokafka's defaults (acks=1, no idempotence) can lose or duplicate acknowledged writes; never rely on them.
    return KafkaBroker(
        # A cluster's list, "host:port,host:port", as several addresses: FastStream would take the string as one host.
        [address.strip() for address in bootstrap.split(",") if address.strip()],
        client_id=client_id,
        security=security,
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        request_timeout_ms=30_000,
        middlewares=(
            KafkaTelemetryMiddleware(),
            KafkaPrometheusMiddleware(registry=registry, app_name=client_id),
        ),
        logger=None,
    )
