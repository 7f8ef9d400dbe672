"""Warm the engine at server start, so the first run after boot starts as fast as the twentieth.

A fresh process pays once for what training touches first: importing the engine,
``torch._dynamo`` (pulled in by the first optimizer step, ~2 s on a laptop), the first
convolution's kernels, numpy's fused-MLP path, PNG encoding. ``warm_up`` does one tiny
run of each kind on generated data, so a student's first metrics arrive in a fraction of
a second instead of after those seconds.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("dlplay.warmup")

# Generated data, a few steps each: enough to touch every code path a first run takes, cheap enough for a start-up.
_WARM_RUNS = (
    {   # a 2D MLP: the fused NumPy path, an observed autograd step (Adam), the boundary, metrics and hints
        "data": {"name": "spiral", "n_samples": 64},
        "network": {"layers": [{"kind": "linear", "name": "h", "out_features": 4, "activation": "tanh"},
                               {"kind": "linear", "name": "out", "out_features": 2}]},
        "train": {"optimizer": {"kind": "adam", "lr": 0.01}, "batch_size": 16, "max_steps": 8, "log_every": 2},
    },
    {   # a small CNN on images: convolutions, pooling, filters and the evaluation view
        "data": {"name": "shapes", "n_samples": 64},
        "network": {"layers": [{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 3, "activation": "relu"},
                               {"kind": "max_pool2d", "name": "p", "kernel_size": 2},
                               {"kind": "linear", "name": "out", "out_features": 4}]},
        "train": {"optimizer": {"kind": "sgd", "lr": 0.01}, "batch_size": 16, "max_steps": 4, "log_every": 2},
    },
)


def warm_up() -> float:
    """Run the warm-up runs (ignoring their results); returns the seconds it took. Never raises."""
    t0 = time.perf_counter()
    try:
        from server.runner import RunSession
        from server.schemas import Experiment

        for document in _WARM_RUNS:
            session = RunSession(Experiment.model_validate(document), run_id="warm-up", device="cpu")
            session.start()
            while not session.done:
                session.advance(max_steps=100, max_seconds=5.0)
            session.close()
    except Exception:  # a broken engine shows up, with its message, when a real run starts
        log.exception("warm-up failed")
    # The hundreds of thousands of objects the imports made live for good; frozen, the garbage
    # collector's full passes skip them (otherwise one pass, ~0.1 s, lands in some run's slice).
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0


__all__ = ["warm_up"]
