"""Integrations with web frameworks, each loaded only when imported (``import pgqueue`` loads
none of them)."""
