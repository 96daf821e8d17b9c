"""`python -m deploy.docker`: the app image's default command, which only says how to use the image."""

USAGE = """\
Children's Teams platform: one image for every service. Pick what to run with the container's command:

  python -m services.referral      HTTP on $CTP_HTTP_PORT (default 8101)
  python -m services.panel         8102
  python -m services.assignment    8103
  python -m services.plans         8104
  python -m services.hub           8105

  python -m shared.security keys             create the local issuer's key pair in .local/keys
  python -m shared.security token --sub S --agency A --role R   print a bearer token (local issuer)
  python -m shared.messaging.topics create   create missing Kafka topics ($KAFKA_BOOTSTRAP, $KAFKA_REPLICATION)
  python -m deploy.docker.migrate            migrate every service's schema ($DATABASE_HOST, $DATABASE_PORT)

Services read CTP_* settings (see shared/settings.py), KAFKA_BOOTSTRAP and the standard OTEL_* variables.
docker-compose.yml at the repository root wires all of it together."""


def main() -> None:
    print(USAGE)


if __name__ == "__main__":
    main()
