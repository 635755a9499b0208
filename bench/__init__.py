"""Benchmarks of the provider, each figure against a baseline measured in the same run (``make bench``)."""
