import os

from stn.util import xla

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")  # the tests are an entry point: no display

xla.configure()  # before anything compiles, for this process and the kernels nbval starts
