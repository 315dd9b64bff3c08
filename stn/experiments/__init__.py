"""Experiments, each with the settings its notebook validates: the toy and its variants, the
robustness study, real data against search baselines, the guide, the best response against
ground truth, diagnostics, the speed benchmark and the eager reference loop."""
