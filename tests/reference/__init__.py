"""Slow, obviously-correct reference implementations of the upstream models (from ../shared/spec)."""
