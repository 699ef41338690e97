"""Dishonest agents with real bpy renders, judged by the marketplace's own crop-check path.

A few trials per agent here; tests/bench/bench_cheats.py runs many and writes the table in
docs/verification.md.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.verification.cheats import AGENTS, Agent, Lab, make_scene

pytestmark = pytest.mark.slow
TRIALS = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(make_scene(Path(tmp_path_factory.mktemp("cheats"))))
    yield lab
    lab.close()


@pytest.mark.parametrize("agent", [a for a in AGENTS if a.honest], ids=lambda a: a.name)
def test_honest_agents_always_pass(lab: Lab, agent: Agent) -> None:
    for trial in range(TRIALS):
        result = lab.trial(agent, trial)
        assert not result.detected, [(c, r.reasons) for c, r in result.crops if not r.passed]
        assert all(r.metrics["max_abs_error"] == 0 for _, r in result.crops)  # bit-identical, not just close


@pytest.mark.parametrize("agent", [a for a in AGENTS if not a.honest], ids=lambda a: a.name)
def test_every_cheat_is_caught(lab: Lab, agent: Agent) -> None:
    for trial in range(TRIALS):
        assert lab.trial(agent, trial).detected


def test_the_cheats_really_differ_from_honest_work(lab: Lab) -> None:
    """Guard against a broken lab: every cheat's upload differs from the honest frame somewhere."""
    honest = AGENTS[0].candidate(lab, 0)
    for agent in AGENTS:
        if not agent.honest:
            assert (abs(agent.candidate(lab, 0) - honest) > 3 / 255).any(), agent.name
