"""The XLA setting the project's entry points apply (the library itself sets nothing on import).

XLA's CPU fusion emitters double the memory of compiling a hypertraining chunk (peak RSS of a
10000-cycle toy run: 1081 MiB with them, 920 MiB without) for ~15% faster cycles. XLA reads
``XLA_FLAGS`` at its first compilation, so an entry point (the notebook runner, the test suite,
the command-line tools) calls :func:`configure` before any compilation; a user's own setting of
the flag wins.
"""

from __future__ import annotations

import os

FLAG = "--xla_cpu_use_fusion_emitters"
#: XLA:CPU's option to compile a small loop's whole body as one function instead of one call per
#: fused operation. It cuts the toy's steady cost per cycle several-fold and raises its compile
#: time, but it makes the real-data networks' training steps several times slower, so the
#: project leaves it off; the benchmark measures a toy run with it
#: (:func:`stn.experiments.benchmark.single_runs`), and so does the JAX row.
ONE_FUNCTION_LOOPS = (
    "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"
)


def flags(current: str = "", one_function_loops: bool = False) -> str:
    """``current`` XLA flags with the fusion emitters switched off, unless they name the flag,
    and with :data:`ONE_FUNCTION_LOOPS` added if asked for."""
    out = current if FLAG in current else f"{current} {FLAG}=false".strip()
    return f"{out} {ONE_FUNCTION_LOOPS}" if one_function_loops else out


def configure() -> None:
    """Apply :func:`flags` to this process's environment (and the processes it starts)."""
    os.environ["XLA_FLAGS"] = flags(os.environ.get("XLA_FLAGS", ""))
