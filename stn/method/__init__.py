"""The method: hyperparameter spaces, hyper layers, hypermodels, optimizers, and Algorithm 1
(:mod:`stn.method.stn`) with its variants (:mod:`stn.method.variants`)."""
