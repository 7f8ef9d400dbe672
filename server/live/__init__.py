"""The table of live views: one file per view, one row each (see ``base.py`` for what a row holds).

Adding a view: write ``server/live/<name>.py`` with a ``VIEW = LiveView(...)`` whose
``compute`` returns protocol messages, add its module to ``_MODULES`` below, add
the message's model to ``server/messages.py``, and a view class in
``frontend/src/viz/`` that draws it. The runner's frame clock, the websocket's
``views``/``probe`` commands and ``GET /api/views`` pick it up from here.
"""

from __future__ import annotations

from server.live import (
    attention,
    backprop_trace,
    boundary,
    evaluation,
    feature_maps,
    fgsm,
    fgsm_sweep,
    filters,
    gradcam,
    gradient_check,
    layer_stats,
    optimizer_race,
    saliency,
    weights,
)
from server.live.base import Argument, FrameClock, LiveView, MIN_RATE_HZ

_MODULES = (layer_stats, weights, filters, feature_maps, saliency, gradcam, attention, boundary, evaluation,
            backprop_trace, gradient_check,
            fgsm, fgsm_sweep, optimizer_race)  # lessons 20 and 9 (issue 11), on demand only

VIEWS: dict[str, LiveView] = {module.VIEW.name: module.VIEW for module in _MODULES}
# Views the frame clock can stream (the others run only on demand, from a button).
LIVE_VIEWS = tuple(name for name, view in VIEWS.items() if view.live)
# Views a connection watches until it says otherwise (what the page shows first).
DEFAULT_VIEWS = tuple(name for name, view in VIEWS.items() if view.default_on)
# Views the ``probe`` command can compute once, now.
ON_DEMAND = tuple(name for name, view in VIEWS.items() if view.compute is not None)
# Message type -> the view that sends it.
VIEW_OF_MESSAGE = {message: view.name for view in VIEWS.values() for message in view.messages}


def describe() -> list[dict]:
    """Every view's row for ``GET /api/views``."""
    return [view.describe() for view in VIEWS.values()]


__all__ = ["Argument", "DEFAULT_VIEWS", "FrameClock", "LIVE_VIEWS", "LiveView", "MIN_RATE_HZ", "ON_DEMAND", "VIEWS",
           "VIEW_OF_MESSAGE", "describe"]
