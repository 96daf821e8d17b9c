"""The one way to build a Kafka broker: durable producer settings, tracing and Prometheus metrics."""

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, CollectorRegistry


def make_broker(bootstrap: str, *, client_id: str, registry: CollectorRegistry = REGISTRY) -> KafkaBroker:
    # aiokafka's defaults (acks=1, no idempotence) can lose or duplicate acknowledged writes; never rely on them.
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
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
