"""Mesh extraction, export and texture baking."""
