"""Fixtures for every test directory."""

pytest_plugins = ["tests.postgres"]
