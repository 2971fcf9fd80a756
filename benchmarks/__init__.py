"""Benchmarks of django-atw against the original async-task-worker library (see bench.py)."""
