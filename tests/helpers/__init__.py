"""Shared helpers of the tests (tests/ is on sys.path through conftest)."""
