"""A slimmable encoder-decoder space for dense prediction: encoder stage widths and depths, one decoder per task."""

from __future__ import annotations

from search_spaces.decisions import Categorical
from search_spaces.errors import UserInputError
from search_spaces.space import Space

NUM_ENCODER_STAGES = 4
WIDTH_CHOICES = (0.5, 0.75, 1.0)
DEPTH_CHOICES = (1, 2, 3)
DEFAULT_TASKS = ("segmentation", "depth")


class EncDecSpace(Space):
    """Decisions `enc_width_i`, `enc_depth_i` (i < 4), then `dec_width_<task>` for each task."""

    def __init__(self, tasks=DEFAULT_TASKS):
        tasks = tuple(str(t) for t in tasks)
        if not tasks or len(set(tasks)) != len(tasks) or not all(t.isidentifier() for t in tasks):
            raise UserInputError(f"encdec: tasks must be distinct identifiers, got {list(tasks)}")
        decisions = []
        for i in range(NUM_ENCODER_STAGES):
            decisions += [Categorical(f"enc_width_{i}", WIDTH_CHOICES), Categorical(f"enc_depth_{i}", DEPTH_CHOICES)]
        decisions += [Categorical(f"dec_width_{t}", WIDTH_CHOICES) for t in tasks]
        super().__init__("encdec", decisions, {"tasks": tasks})
        self.tasks = tasks
