"""Hub service: concerns, explainable risk screening, escalation of critical concerns until acknowledged."""
