"""The Orbax adapter: round trip, latest step, and clear refusals of foreign or corrupt checkpoints."""

import jax.numpy as jnp
import numpy as np
import pytest

from nas.checkpoint import Checkpoints
from search_spaces.errors import UserInputError


def trees(scale=1.0):
    return {"model": {"w": jnp.arange(6.0).reshape(2, 3) * scale, "bn": {"mean": jnp.zeros(3)}},
            "optimizer": {"count": jnp.int32(4), "trace": {"w": jnp.ones((2, 3)) * scale}}}


def files_of(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_round_trip_keeps_arrays_and_meta(tmp_path):
    ck = Checkpoints(tmp_path / "ck", kind="test-v1", trees=("model", "optimizer"))
    assert ck.latest_step() is None
    ck.save(3, trees(1.0), {"data_position": [0, 3]})
    ck.save(5, trees(2.0), {"data_position": [1, 0]})
    restored, meta = ck.restore(trees(0.0))
    assert ck.latest_step() == 5 and meta["step"] == 5 and meta["data_position"] == [1, 0]
    np.testing.assert_array_equal(restored["model"]["w"], trees(2.0)["model"]["w"])
    assert restored["optimizer"]["count"] == 4 and restored["optimizer"]["count"].dtype == jnp.int32
    only_model, _ = ck.restore(trees(0.0), step=3, names=("model",))
    assert set(only_model) == {"model"}
    np.testing.assert_array_equal(only_model["model"]["w"], trees(1.0)["model"]["w"])


def test_keeps_only_the_newest_checkpoints(tmp_path):
    ck = Checkpoints(tmp_path / "ck", kind="test-v1", trees=("model", "optimizer"), max_to_keep=2)
    for step in (1, 2, 3):
        ck.save(step, trees(), {})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == ["2", "3"]


def test_checkpoint_of_another_kind_is_refused_and_left_alone(tmp_path):
    Checkpoints(tmp_path / "ck", kind="other-v1", trees=("model", "optimizer")).save(2, trees(), {})
    before = files_of(tmp_path / "ck")
    with pytest.raises(UserInputError, match="is not a 'test-v1' checkpoint.*'other-v1'"):
        Checkpoints(tmp_path / "ck", kind="test-v1", trees=("model", "optimizer")).restore(trees())
    assert files_of(tmp_path / "ck") == before


def test_checkpoint_of_another_structure_is_refused(tmp_path):
    Checkpoints(tmp_path / "ck", kind="test-v1", trees=("model", "optimizer")).save(2, trees(), {})
    other = trees()
    other["model"]["w"] = jnp.zeros((4, 4))
    with pytest.raises(UserInputError, match="cannot be restored.*left as it is"):
        Checkpoints(tmp_path / "ck", kind="test-v1", trees=("model", "optimizer")).restore(other)


def test_corrupt_checkpoint_is_refused_and_left_alone(tmp_path):
    Checkpoints(tmp_path / "ck", kind="test-v1", trees=("model", "optimizer")).save(2, trees(), {})
    for path in (tmp_path / "ck" / "2").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00garbage")
    before = files_of(tmp_path / "ck")
    with pytest.raises(UserInputError, match="checkpoint .*2.* (cannot be restored|is not a 'test-v1')"):
        Checkpoints(tmp_path / "ck", kind="test-v1", trees=("model", "optimizer")).restore(trees())
    assert files_of(tmp_path / "ck") == before


def test_missing_directory_is_a_user_error_when_not_creating(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        Checkpoints(tmp_path / "nope", kind="test-v1", trees=("model",), create=False)
