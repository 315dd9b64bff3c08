import os

from stn.util import xla

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

xla.configure()  # before anything compiles, for this process and the kernels nbval starts
