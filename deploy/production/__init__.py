"""Production Kafka definitions (topics and ACLs); see README.md here."""
