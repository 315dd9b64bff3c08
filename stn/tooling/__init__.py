"""Notebook and figure tooling: the notebook runner, plots, the replication check, the README's
generated numbers and the environment record."""
