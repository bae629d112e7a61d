"""Search spaces: decisions, the integer-array encoding of architectures and vectorized operations on it."""

from search_spaces.decisions import Categorical, Decision, IntRange
from search_spaces.errors import UserInputError
from search_spaces.registry import get_space, list_spaces, register_space
from search_spaces.space import Space, as_rng

__all__ = ["Categorical", "Decision", "IntRange", "Space", "UserInputError", "as_rng", "get_space", "list_spaces",
           "register_space"]
