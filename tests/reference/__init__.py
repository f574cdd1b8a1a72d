"""Slow, obviously-correct reference implementations of the upstream models (from docs/spec)."""
