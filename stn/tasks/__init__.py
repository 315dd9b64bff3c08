"""Tasks and data: the toy problem (fit x²) and image classification, with their metrics."""
