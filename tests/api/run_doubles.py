"""Real RunSessions with one deliberate flaw each, for the isolation tests (tests/api/test_isolation.py).

They live in a module of their own because a run's child process imports its
session factory by name: a class defined inside a test function could not be sent.
Everything else about them is the real engine (a real model, data, trainer).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from server.runner import RunSession

STUCK_STEP_SECONDS = 60.0  # the deliberately slow step: far longer than any stop may take


class StuckStepSession(RunSession):
    """Trains normally for its first slice, then its next step takes a minute (a sleep stands in for a huge op)."""

    def advance(self, **kwargs: Any) -> list[dict[str, Any]]:
        if self.trainer.step_count >= 5:
            time.sleep(STUCK_STEP_SECONDS)
        return super().advance(**kwargs)


class GreedySession(RunSession):
    """After its first steps, a step asks for 8 GiB at once (more than its process may allocate)."""

    def advance(self, **kwargs: Any) -> list[dict[str, Any]]:
        if self.trainer.step_count >= 5:
            hog = torch.ones(2 * 1024**3, dtype=torch.float32)  # 8 GiB: over max_run_memory_bytes
            hog.add_(1)
        return super().advance(**kwargs)
