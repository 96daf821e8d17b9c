"""Benchmarks of the messaging backbone against the real local stack (`make bench`); results go to bench/results/."""
