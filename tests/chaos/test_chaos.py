"""The short chaos run: a fixed seed, about a minute of faults and quiet, checked.

A 3-node JetStream cluster and three routers under the nemesis (routers
killed and paused, nodes frozen and killed, the stream leader among them)
while raw wire clients and SDK clients register, heartbeat, deregister and
race for shared ids. The checker reads the history; any violated invariant
fails the test with the checker's own account. The long runs are made by
hand with ``python -m tests.chaos.run`` (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.history import read_history
from tests.chaos.run import CI_DURATION, RunConfig, check_history, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.exclusive, pytest.mark.one_python]

SEED = 14
DURATION = CI_DURATION  # seconds of faults; with start, warm-up and quiet, about 75 s


@pytest.mark.timeout(300)
async def test_no_invariant_breaks_under_a_seeded_minute_of_faults(tmp_path: Path) -> None:
    result = await run_chaos(RunConfig(seed=SEED, duration=DURATION, out=tmp_path))

    # The harness did its part: a run with nothing in it proves nothing.
    assert result.ops["register"] > 0, result.ops
    assert result.ops["heartbeat"] > 100, result.ops
    assert sum(result.faults.values()) >= 4, result.faults
    # The storm was past what the routers take: they shed it (issue 22's case).
    assert result.storm["503"] > 0, result.storm
    kinds = {r["type"] for r in read_history(result.history)}
    assert {"meta", "op", "event", "fault", "view", "router_log", "storm", "end"} <= kinds

    violations, account = check_history(result.history)
    assert violations == 0, f"history {result.history}\n{account}"
