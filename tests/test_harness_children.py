"""The harness leaves no ``currents-consumer`` child behind a test that stopped early."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from replay_harness import kill_leftovers, start


async def test_a_child_a_test_left_running_is_killed_with_its_group(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    args = ["replay", str(tmp_path / "in"), "--follow", "--state-dir", str(tmp_path / "state")]
    follower = await start(args, {"AMPLITUDE_API_KEY": "k"}, tmp_path)  # never ends by itself
    assert follower.proc.returncode is None
    assert kill_leftovers() == 1
    assert await asyncio.wait_for(follower.proc.wait(), 30) == -signal.SIGKILL
    await follower.out, await follower.err
    assert kill_leftovers() == 0
