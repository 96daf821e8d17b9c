"""The project's own library: events, messaging, database, telemetry and security shared by every service."""
