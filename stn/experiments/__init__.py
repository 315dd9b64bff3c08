"""Experiments: the toy and its variants, real data against search baselines, diagnostics, the
speed benchmark and the eager reference loop."""
