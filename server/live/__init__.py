"""The table of live views: one file per view, one row each (see ``base.py`` for what a row holds).

Adding a view: write ``server/live/<name>.py`` with a ``VIEW = LiveView(...)`` whose
``compute`` returns protocol messages, add its module to ``_MODULES`` below, add
the message's model to ``server/messages.py``, and a view class in
``frontend/src/viz/`` that draws it. The runner's frame clock, the websocket's
``views``/``probe`` commands and ``GET /api/views`` pick it up from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def check_views(views: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A ``views`` request (name -> arguments) with every name and argument checked; ValueError otherwise.

    The scheduler checks a page's request with it before anything changes, and the session again
    before it watches the union of its pages' requests.
    """
    checked: dict[str, dict[str, Any]] = {}
    for name, args in views.items():
        view = VIEWS.get(name)
        if view is None or not view.live:
            raise ValueError(f"unknown live view {name!r}; the live views are {', '.join(LIVE_VIEWS)}")
        if not isinstance(args, Mapping):
            raise ValueError(f"the arguments of view {name!r} must be an object such as {{\"index\": 3}}")
        checked[name] = view.check_arguments(dict(args))
    return checked


def describe() -> list[dict]:
    """Every view's row for ``GET /api/views``."""
    return [view.describe() for view in VIEWS.values()]


__all__ = ["Argument", "check_views", "DEFAULT_VIEWS", "FrameClock", "LIVE_VIEWS", "LiveView", "MIN_RATE_HZ", "ON_DEMAND", "VIEWS",
           "VIEW_OF_MESSAGE", "describe"]
