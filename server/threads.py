"""The CPU thread counts of the math libraries, set once per process (the server and ``dlplay run``).

torch's intra-op pool and NumPy's BLAS (OpenBLAS here) each start one thread per core. On a
2-core laptop with anything else running, threads that outnumber the free cores spin against
each other: a LeNet step went from 20 to 115 ms with two torch threads, a fused-MLP step
(NumPy matmuls) from 1.8 to 89 ms with two BLAS threads. The server leaves one core to its
event loop, so both libraries get ``Settings.torch_threads`` (cores - 1).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("dlplay.threads")


def use_threads(count: int) -> None:
    """Give torch and NumPy's BLAS ``count`` threads each."""
    torch.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits  # ships with scikit-learn, a dependency
    except ImportError:  # pragma: no cover - scikit-learn requires it
        log.warning("threadpoolctl is missing: NumPy's BLAS keeps one thread per core")
        return
    threadpool_limits(limits=count, user_api="blas")


__all__ = ["use_threads"]
