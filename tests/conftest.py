"""The suite's fixtures and checks live in :mod:`tests.support`; this file only loads them."""

pytest_plugins = ["tests.support.guards", "tests.support.fixtures"]
