"""The `supernet` evaluator: validation accuracy of subnets with inherited weights after BN calibration, computed
in Ray actors that receive the trained weights and the data once through the object store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from search_spaces.errors import UserInputError


def supernet_payload(model, config, data, *, split: str = "val", batch_size: int | None = None,
                     calibration_batches: int | None = None) -> dict:
    """What every worker needs: the model's constructor config and weights (numpy), the experiment config, the
    data set and the evaluation settings (default: the run's batch size and BN calibration batches)."""
    import jax
    from flax import nnx

    return {"family": type(model).family, "model_config": model.config(),
            "weights": jax.device_get(nnx.state(model).to_pure_dict()),
            "config": config.to_dict(), "data": data, "split": split,
            "batch_size": int(batch_size or config.train.batch_size),
            "calibration_batches": int(calibration_batches or config.train.bn_calibration_batches)}


class SupernetWorker:
    """Rebuilds the supernet from a payload once, then evaluates subnets one after another."""

    def __init__(self, payload: dict):
        from flax import nnx

        from nas.config import config_from_dict
        from supernets.registry import get_supernet

        self.config = config_from_dict(payload["config"])
        self.space = self.config.build_space()
        self.model = get_supernet(payload["family"]).model.from_config(payload["model_config"], rngs=nnx.Rngs(0))
        state = nnx.state(self.model)
        nnx.replace_by_pure_dict(state, payload["weights"])
        nnx.update(self.model, state)
        self.data, self.split = payload["data"], payload["split"]
        self.batch_size, self.calibration_batches = payload["batch_size"], payload["calibration_batches"]

    def evaluate(self, archs: np.ndarray) -> list[float]:
        """Accuracy of each (D,) row after calibrating BN on training batches; the weights stay as loaded."""
        from nas.train import evaluate_subnet

        return [float(evaluate_subnet(self.model, self.data, self.space, arch, batch_size=self.batch_size,
                                      calibration_batches=self.calibration_batches, seed=self.config.seed,
                                      split=self.split)) for arch in np.asarray(archs)]


def actor_env(compile_cache_dir: str | Path | None = None) -> dict[str, str]:
    """One XLA thread per actor, and the persistent JAX compilation cache of `nas.jax_cache` (or the given
    directory), so only the first actor to meet a resolution compiles the supernet for it."""
    from nas.jax_cache import CACHE_ENV, DEFAULT_DIR, MIN_SECONDS_ENV
    from nas.ray_pool import SINGLE_THREAD_ENV

    cache = Path(compile_cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_DIR)
    return {**SINGLE_THREAD_ENV, CACHE_ENV: str(cache.absolute()), MIN_SECONDS_ENV: "1"}


def _check_space(space, run_space, run_dir) -> None:
    if space is not None and space.config() != run_space.config():
        raise UserInputError(f"supernet run {str(run_dir)!r} was trained on space {run_space.config()}, but the search "
                             f"is over {space.config()}; search the run's space")


class SupernetEvaluator:
    """`accuracy` of subnets of a trained supernet (a run directory of `nas train`), evaluated by `num_actors`
    Ray actors (default: every CPU of the cluster; 0 evaluates in this process without Ray).

    Each actor uses one XLA thread and the shared compilation cache (`actor_env`); an actor that dies is
    restarted and its subnet evaluated again."""

    metrics = ("accuracy",)

    def __init__(self, space, run_dir: str | Path | None = None, *, payload: dict | None = None,
                 ray_address: str | None = None, num_actors: int | None = None,
                 compile_cache_dir: str | Path | None = None, **settings):
        if payload is None:
            payload = self._load(space, run_dir, **settings)
        self.space = space
        self._pool, self._local, self._owns_ray = None, None, False
        if num_actors == 0:
            self._local = SupernetWorker(payload)
        else:
            from nas.ray_pool import ActorPool, ensure_ray

            self._owns_ray = ensure_ray(ray_address)
            self._pool = ActorPool(SupernetWorker, payload, num_actors=num_actors,
                                   env_vars=actor_env(compile_cache_dir))

    @staticmethod
    def _load(space, run_dir, **settings) -> dict:
        from nas.train import load_data, load_trained_supernet

        if run_dir is None or not Path(run_dir).is_dir():
            raise UserInputError(f"supernet evaluator: run directory {str(run_dir)!r} does not exist; give the "
                                 "directory `nas train` wrote (runs/<name>)")
        model, run_space, config = load_trained_supernet(run_dir)
        _check_space(space, run_space, run_dir)
        return supernet_payload(model, config, load_data(config), **settings)

    @property
    def num_actors(self) -> int:
        return 0 if self._pool is None else self._pool.num_actors

    @property
    def pool(self):
        return self._pool

    def evaluate(self, archs) -> dict[str, np.ndarray]:
        archs = self.space.validate(archs)
        if self._local is not None:
            return {"accuracy": np.asarray(self._local.evaluate(archs), np.float64)}
        results = self._pool.map("evaluate", [archs[i:i + 1] for i in range(len(archs))])
        return {"accuracy": np.asarray([r[0] for r in results], np.float64)}

    @property
    def asynchronous(self) -> bool:
        """True with Ray actors: `submit` and `completed` evaluate without waiting for a whole batch."""
        return self._pool is not None

    def submit(self, arch) -> int:
        return self._pool.submit("evaluate", self.space.validate(np.asarray(arch).reshape(1, -1)))

    def completed(self) -> list[tuple[int, dict[str, float]]]:
        return [(ticket, {"accuracy": float(result[0])}) for ticket, result in self._pool.completed()]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False
