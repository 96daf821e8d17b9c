"""Running the platform: the local stack (no Docker), and configuration for Docker and production clusters."""
