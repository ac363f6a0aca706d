"""Benchmarks: latency, reasoning cost, context growth, overhead, start-up and memory.

Run `python -m benchmarks` (a few minutes) or `python -m benchmarks --smoke` (seconds).
Every figure is a ratio against a baseline measured in the same run.
"""
