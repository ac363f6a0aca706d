"""Reliability and security harness: faults, crash-resume, prompt injection, load, secrets.

`python -m reliability` prints the figures; `tests/reliability` asserts them under pytest.
"""
