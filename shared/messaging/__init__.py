"""Messaging backbone: CloudEvents envelope, broker, outbox, inbox, retries and dead letters, topics."""
