"""Helpers every layer may use: argument checks, atomic writes, the entry points' XLA setting."""
