"""Reporting service: a read model of the public streams, and the figures governance, panels and managers read."""
