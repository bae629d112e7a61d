"""The one adapter to Orbax: numbered checkpoints of named array trees plus a JSON metadata dict tagged by kind."""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from search_spaces.errors import UserInputError

META = "meta"


class Checkpoints:
    """Checkpoints under `directory`, one per step, each holding array trees (`trees`) and a JSON dict (`meta`).

    `kind` is written into every checkpoint's metadata and checked on restore, so a checkpoint written by
    something else is refused with a clear error instead of being loaded or overwritten. Saving is synchronous and
    Orbax writes each step to a temporary directory first, so a process killed mid-save leaves the last complete
    checkpoint intact.
    """

    def __init__(self, directory: str | Path, *, kind: str, trees: tuple[str, ...], max_to_keep: int = 2,
                 create: bool = True):
        self.directory, self.kind, self.trees = Path(directory).absolute(), kind, tuple(trees)
        if not create and not self.directory.is_dir():
            raise UserInputError(f"checkpoint directory {self.directory} does not exist")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=self.trees + (META,))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, trees: dict, meta: dict) -> None:
        items = {name: ocp.args.StandardSave(trees[name]) for name in self.trees}
        self._manager.save(step, args=ocp.args.Composite(**items, **{META: ocp.args.JsonSave(
            {"kind": self.kind, "step": step, **meta})}), force=True)
        self._manager.wait_until_finished()

    def restore_meta(self, step: int | None = None) -> dict:
        """The metadata of checkpoint `step` (default: the latest), after checking it is of this kind."""
        step = self._step(step)
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]
        except Exception as e:  # noqa: BLE001 - any failure to read means an unusable checkpoint
            raise self._unreadable(step, e) from None
        if not isinstance(meta, dict) or meta.get("kind") != self.kind:
            found = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
            raise UserInputError(f"checkpoint {self.directory / str(step)} is not a {self.kind!r} checkpoint "
                                 f"(its kind is {found!r}); it was left as it is")
        return meta

    def restore(self, like: dict, step: int | None = None, names: tuple[str, ...] | None = None):
        """(trees, meta) of checkpoint `step`; `like` gives each named tree's structure, shapes and dtypes."""
        step = self._step(step)
        meta = self.restore_meta(step)
        names = self.trees if names is None else tuple(names)
        items = {name: ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, like[name]))
                 for name in names}
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001 - corrupt files and foreign trees both end here
            raise self._unreadable(step, e) from None
        return {name: restored[name] for name in names}, meta

    def close(self) -> None:
        self._manager.close()

    def _step(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserInputError(f"no checkpoint in {self.directory}")
        return step

    def _unreadable(self, step: int, error: Exception) -> UserInputError:
        detail = " ".join(str(error).split())[:300]
        return UserInputError(f"checkpoint {self.directory / str(step)} cannot be restored: it is corrupt or was "
                              f"written for another model or config ({type(error).__name__}: {detail}); it was "
                              f"left as it is: delete it, or start a run under another `name`")
