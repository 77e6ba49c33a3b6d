"""The deterministic simulation (tests/simulation.py) over a fixed set of seeds: after
every crash and restart the recovered state is the acknowledged one, and every retry of a
lost reply inside its window gets the stored outcome and changes nothing. Longer runs:
`make simulate SEEDS=N`; one failing seed again: `make simulate SEED=S STEPS=N`."""

from __future__ import annotations

import pytest

from tests.simulation import STEPS, run_seed

SEEDS = range(12)   # seeds 1, 4, 7, 10: a tiny --dedup-max-entries; 2, 6, 10: batches of 1-3


@pytest.mark.parametrize("seed", SEEDS)
def test_recovery_gives_back_what_was_acknowledged(seed: int) -> None:
    checked = run_seed(seed, STEPS)
    assert checked["crash"] and checked["restart"]
