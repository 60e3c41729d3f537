"""Benchmark of the Gold streaming job against the seed's configuration (`python bench/run.py`)."""
