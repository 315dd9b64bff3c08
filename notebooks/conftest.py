"""nbval's kernels inherit this process's environment: apply the project's XLA setting before
they start, as the notebook runner does, so `make test` computes what `make figures` computes."""

from stn.util import xla

xla.configure()
