"""Command-line tools for integrators and operators."""
