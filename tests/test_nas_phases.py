"""Training phases: step layout, schedules, allowed choices (OFA's progressive shrinking, SPOS's uniform paths),
deterministic per-step subnets."""

import numpy as np
import pytest

from nas.config import PhaseConfig, TrainConfig
from nas.phases import build_phases as build_family_phases
from nas.phases import sample_uniform, subnets_of_step
from search_spaces import get_space, ofa_mbv3
from supernets.ofa_mbv3 import allowed_choices, sorts_channels
from supernets.registry import get_supernet

SPACE = get_space("ofa_mbv3", resolutions=(16, 24, 32))
OFA = get_supernet("ofa")


def build_phases(train, space, steps_per_epoch):
    return build_family_phases(train, space, steps_per_epoch, OFA)
PS_PHASES = [PhaseConfig(name="full", epochs=1, lr=0.1),
             PhaseConfig(name="kernel", epochs=0.5, lr=0.05, kernel=[3, 5, 7]),
             PhaseConfig(name="depth", epochs=1, lr=0.02, kernel=[3, 5, 7], depth=[3, 4]),
             PhaseConfig(name="expand", epochs=1, lr=0.02, kernel=[3, 5, 7], depth=[2, 3, 4], expand=[4, 6]),
             PhaseConfig(name="expand2", epochs=1, lr=0.02, kernel=[3, 5, 7], depth=[2, 3, 4], expand=[3, 4, 6])]


def train_config(**kwargs):
    return TrainConfig(**{"phases": PS_PHASES, "warmup_epochs": 0.2, **kwargs})


def values(archs):
    return SPACE.values(np.atleast_2d(archs))


def test_phases_are_laid_end_to_end_with_their_own_schedule():
    phases = build_phases(train_config(), SPACE, steps_per_epoch=10)
    assert [(p.start, p.steps) for p in phases] == [(0, 10), (10, 5), (15, 10), (25, 10), (35, 10)]
    assert [p.warmup_steps for p in phases] == [2, 2, 2, 2, 2]
    assert [p.name for p in phases][:2] == ["full", "kernel"] and phases[0].end == phases[1].start == 10
    assert [sorts_channels(p, phases) for p in phases] == [False, False, False, True, False]
    kernel = phases[1]
    lrs = [kernel.learning_rate(s) for s in range(kernel.start, kernel.end)]
    assert 0 < lrs[0] < lrs[1] < lrs[2] == pytest.approx(0.05)
    assert lrs[2] > lrs[3] > lrs[4] > 0


def test_allowed_choices_default_to_the_largest():
    full = values(build_phases(train_config(), SPACE, 10)[0].smallest())[0]
    assert set(full[ofa_mbv3.KERNEL]) == {7} and set(full[ofa_mbv3.DEPTH]) == {4}
    assert set(full[ofa_mbv3.EXPAND]) == {6} and full[ofa_mbv3.RESOLUTION] == 16
    mask = allowed_choices(SPACE, PS_PHASES[2])
    assert mask[ofa_mbv3.DEPTH].tolist() == [[False, True, True]] * 5
    assert mask[ofa_mbv3.RESOLUTION].tolist() == [True, True, True]


def test_subnets_are_a_pure_function_of_seed_and_step():
    train, phases = train_config(), build_phases(train_config(), SPACE, 10)
    depth = phases[2]
    first = subnets_of_step(depth, train, seed=3, step=17)
    again = subnets_of_step(depth, train, seed=3, step=17)
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    others = [subnets_of_step(depth, train, seed=s, step=t)[0] for s, t in ((3, 18), (4, 17))]
    assert not any(np.array_equal(first[0], o) for o in others)


def test_sandwich_step_has_largest_smallest_and_random_subnets_within_the_phase():
    train = train_config(sandwich=True, num_random=2, distill=True)
    expand = build_phases(train, SPACE, 10)[3]
    for step in range(expand.start, expand.end):
        archs, distill = subnets_of_step(expand, train, seed=0, step=step)
        resolution = archs[0, ofa_mbv3.RESOLUTION]
        assert archs.shape == (4, SPACE.num_decisions) and distill
        assert (archs[:, ofa_mbv3.RESOLUTION] == resolution).all()
        assert np.array_equal(archs[0], np.r_[resolution, expand.largest()[1:]])
        assert np.array_equal(archs[1], np.r_[resolution, expand.smallest()[1:]])
        v = values(archs)
        assert set(v[:, ofa_mbv3.EXPAND].ravel()) <= {4, 6} and set(v[:, ofa_mbv3.DEPTH].ravel()) <= {2, 3, 4}
    seen = {subnets_of_step(expand, train, seed=0, step=s)[0][0, ofa_mbv3.RESOLUTION] for s in range(60)}
    assert seen == {0, 1, 2}


def test_single_architecture_phase_trains_it_alone():
    train = train_config(sandwich=True, num_random=2)
    full = build_phases(train, SPACE, 10)[0]
    archs, distill = subnets_of_step(full, train, seed=0, step=0)
    assert archs.shape == (1, SPACE.num_decisions) and not distill


def test_without_sandwich_random_subnets_and_optional_teacher():
    kernel = build_phases(train_config(), SPACE, 10)[1]
    archs, distill = subnets_of_step(kernel, train_config(sandwich=False, distill=False, num_random=0), 0, 11)
    assert len(archs) == 1 and not distill
    archs, distill = subnets_of_step(kernel, train_config(sandwich=False, distill=True, num_random=2), 0, 11)
    assert len(archs) == 3 and distill and np.array_equal(archs[0, 1:], kernel.largest()[1:])


def test_sampling_is_uniform_over_the_allowed_choices():
    mask = allowed_choices(SPACE, PhaseConfig(name="x", kernel=[3, 7], expand=[3, 4, 6]))
    archs = sample_uniform(mask, 6000, np.random.default_rng(0))
    kernel_values = values(archs)[:, ofa_mbv3.KERNEL]
    assert set(np.unique(kernel_values)) == {3, 7}
    assert abs((kernel_values == 3).mean() - 0.5) < 0.02
    assert abs((values(archs)[:, ofa_mbv3.EXPAND] == 4).mean() - 1 / 3) < 0.02


def test_spos_phases_sample_every_operation_uniformly_on_every_edge():
    from search_spaces.nb201 import OPS

    nb201 = get_space("nb201")
    train = TrainConfig(phases=[PhaseConfig(name="one-shot")], sandwich=False, distill=False, num_random=3)
    (phase,) = build_family_phases(train, nb201, 10, get_supernet("spos"))
    archs = np.concatenate([subnets_of_step(phase, train, seed=0, step=s)[0] for s in range(2000)])
    assert archs.shape == (6000, 6)
    for edge in archs.T:
        counts = np.bincount(edge, minlength=len(OPS)) / len(edge)
        assert np.abs(counts - 1 / len(OPS)).max() < 0.02


def test_spos_phases_refuse_the_ofa_keys_and_ofa_phases_refuse_split():
    from search_spaces.errors import UserInputError

    with pytest.raises(UserInputError, match="kernel applies to the ofa family"):
        get_supernet("spos").allowed_choices(get_space("nb201"), PhaseConfig(name="x", kernel=[3]))
    with pytest.raises(UserInputError, match="split applies to the spos family"):
        allowed_choices(SPACE, PhaseConfig(name="x", split=True))
