"""Settings every service shares, read from the environment (prefix CTP_). Each service subclasses them once."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTP_", extra="ignore")

    # Set by each service's subclass; also the database schema, role and consumer-group prefix.
    service: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8000

    kafka_bootstrap: str = Field(default="127.0.0.1:29092", validation_alias="KAFKA_BOOTSTRAP")
    # How the Kafka clients authenticate: PLAINTEXT on the local stack; SASL_SSL with SCRAM-SHA-512 and one principal
    # per service in production (deploy/production/acls.yaml). The CA file verifies the brokers' certificates.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str | None = None
    # postgresql+asyncpg://<role>:<password>@host:port/childrensteams; the schema is the service name.
    database_url: str = "postgresql+asyncpg://referral:referral@127.0.0.1:25432/childrensteams"
    database_pool_size: int = 10

    # Outbox relay: how many rows one pass publishes, and how long it sleeps when no NOTIFY wakes it.
    relay_batch_size: int = 500
    relay_idle_seconds: float = 1.0

    # Consumer retries: delay before attempt n is retry_base_seconds * 4**(n-2); then the dead-letter topic.
    retry_attempts: int = 5
    retry_base_seconds: float = 1.0
    retry_max_delay_seconds: float = 60.0
    consumer_max_records: int = 200

    # How often each consumer's lag is measured for /metrics (ctp_consumer_lag_messages).
    lag_interval_seconds: float = 15.0

    timer_poll_seconds: float = 1.0
    timer_lease_seconds: float = 60.0

    # Bearer tokens: the issuer's public key (PEM) and the expected audience.
    auth_public_key_file: str = str(Path(__file__).resolve().parents[1] / ".local" / "keys" / "dev-issuer.pub.pem")
    auth_issuer: str = "childrensteams-dev-issuer"
    auth_audience: str = "childrensteams"

    @property
    def source(self) -> str:
        """The CloudEvents `source` of everything this service publishes."""
        return f"/services/{self.service}"

    @property
    def db_schema(self) -> str:
        return self.service
