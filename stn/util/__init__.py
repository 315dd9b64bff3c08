"""Helpers every layer may use: argument checks, settings dataclasses, atomic writes, the entry
points' XLA setting."""
