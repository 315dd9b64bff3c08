"""Applied to every pytest run here, the unit tests and nbval's notebooks alike: the project's XLA
setting, before anything compiles, for this process and the kernels nbval starts (they inherit
its environment), so `make test` computes what `make figures` computes; float32's last bits
differ between the two compiled codes."""

import os

from stn.util import xla

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
xla.configure()
