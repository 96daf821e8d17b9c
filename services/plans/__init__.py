"""Plans service: the Child's Action Network, common assessment, one Child's Plan, reviews and exit."""
