"""The optimizer race on a 2D test function (lesson 9), on demand: every optimizer's path over the contours.

It does not read the run's model: any run can ask for it (the lesson 9 preset's page does).
"""

from __future__ import annotations

from typing import Any

from server import protocol
from server.lessons import optim_race
from server.live.base import Argument, LiveView


def compute(session: Any, function: str | None = None, steps: int | None = None,
            lr: float | None = None) -> list[dict[str, Any]]:
    result = optim_race.race(function or "valley", steps, None if lr is None else float(lr))
    return [protocol.optimizer_race_message(result, optim_race.surface(result.function))]


VIEW = LiveView(
    name="optimizer_race",
    messages=("optimizer_race",),
    description="SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam and L-BFGS from one start on a 2D test function",
    compute=compute,
    arguments=(
        Argument("function", "str", f"the surface: {', '.join(optim_race.FUNCTIONS)}; default valley"),
        Argument("steps", "int", f"optimizer steps per racer, 1..{optim_race.MAX_STEPS}; default: the function's own"),
        Argument("lr", "float", "one learning rate for every racer; default: each optimizer's own for the function"),
    ),
)
