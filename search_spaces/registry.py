"""The registry of search spaces by name, so configs and the CLI can say `ofa_mbv3` and users add their own."""

from __future__ import annotations

from typing import Callable

from search_spaces.encdec import EncDecSpace
from search_spaces.errors import UserInputError
from search_spaces.nb201 import NB201Space
from search_spaces.ofa_mbv3 import OFAMobileNetV3Space
from search_spaces.space import Space

_FACTORIES: dict[str, Callable[..., Space]] = {
    "ofa_mbv3": OFAMobileNetV3Space,
    "nb201": NB201Space,
    "encdec": EncDecSpace,
}


def register_space(name: str, factory: Callable[..., Space], *, overwrite: bool = False) -> None:
    """Makes `get_space(name, **hparams)` call `factory(**hparams)`."""
    if name in _FACTORIES and not overwrite:
        raise UserInputError(f"search space {name!r} is already registered; pass overwrite=True to replace it")
    _FACTORIES[name] = factory


def list_spaces() -> list[str]:
    return sorted(_FACTORIES)


def get_space(name: str, **hparams) -> Space:
    """The space registered as `name`, built with the given hyperparameters."""
    if name not in _FACTORIES:
        raise UserInputError(f"unknown search space {name!r}; known spaces: {list_spaces()}")
    try:
        return _FACTORIES[name](**hparams)
    except TypeError as e:
        raise UserInputError(f"search space {name!r}: bad hyperparameters {hparams}: {e}") from None
