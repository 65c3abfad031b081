"""Reproducible benchmarks of Stepline (not tests): see benchmarks/README.md."""
