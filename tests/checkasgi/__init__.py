"""ASGI applications wired in different ways, for the live-progress system checks."""
