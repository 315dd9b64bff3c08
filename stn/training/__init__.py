"""Training machinery: the compiled loop, the run record, checkpoints, summaries, progress."""
