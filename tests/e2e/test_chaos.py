"""The bounded chaos run (`make chaos`) under pytest, so that CI runs it with the suite.

Workers and a monitor run as processes against a private redis-server, the embedded MongoDB, a
fake S3 and the fake Gmail while every kind of fault lands; the run's own checks are the
assertions. CI runs one fixed seed (a red run is reproducible); locally each run draws a seed
(printed either way: `python -m chaos --seed N` replays the schedule).
"""

import random
from pathlib import Path

import pytest
from rich.console import Console

from chaos.injector import Kind
from chaos.runner import BOUNDED, run, schedule
from chaos.servers import redis_server_binary
from tests.conftest import IN_CI, require

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CI_SEED = 20261128


def test_every_kind_of_fault_is_scheduled_and_a_seed_replays_its_schedule() -> None:
    first = schedule(random.Random(7), BOUNDED.rounds)
    assert first == schedule(random.Random(7), BOUNDED.rounds)
    assert len(first) == BOUNDED.rounds
    assert set(first) == set(Kind)


def test_the_bounded_chaos_run_keeps_every_invariant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require(redis_server_binary() is not None, "redis-server")
    seed = CI_SEED if IN_CI else random.SystemRandom().randrange(2**31)
    with capsys.disabled():
        print(f"\nchaos seed {seed} (python -m chaos --seed {seed} replays it)")
    result = run(BOUNDED, seed, Console(width=110), tmp_path / "chaos")

    assert result.ok, f"seed {seed}:\n" + "\n".join(result.violations) + "\n" + result.tables
    storage = result.storage
    assert storage.stored == storage.expected > 0
    assert (storage.duplicated, storage.lost, storage.wrong) == (0, 0, 0)
    assert BOUNDED.blob_store == "s3"  # the blobs went to S3 and were read back from it
    events = result.events
    assert events.records == storage.stored
    assert events.missing == 0
    assert events.seen >= storage.stored
    assert set(result.injected) == set(Kind), "every kind of fault was injected"
