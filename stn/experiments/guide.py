"""The guide notebook's settings (``notebooks/your_model.ipynb``: a Keras model made
self-tuning with the public API)."""

from __future__ import annotations

from dataclasses import dataclass

from stn.tasks.classification import WEIGHT_DECAY_BOUNDS
from stn.util.settings import Settings, setting


@dataclass(frozen=True)
class GuideSettings(Settings):
    """One STN run on digits, resumed halfway from a checkpoint."""

    seed: int = setting(ge=0, le=2**32 - 1)
    warmup_steps: int = setting(ge=0)
    cycles: int = setting(ge=2)
    eval_every: int = setting(ge=1)  # cycles
    initial_dropout: float = setting(gt=0, lt=0.9)
    initial_weight_decay: float = setting(gt=WEIGHT_DECAY_BOUNDS[0], lt=WEIGHT_DECAY_BOUNDS[1])
    output_dir: str = setting()
    checkpoint_dir: str = setting()

    def check_together(self) -> None:
        if self.cycles % (2 * self.eval_every):
            raise ValueError(
                f"cycles={self.cycles} is not allowed; it must be a multiple of 2 * eval_every = "
                f"{2 * self.eval_every}: each half of the run ends on an evaluation"
            )
