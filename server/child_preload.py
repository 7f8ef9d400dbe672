"""Imported once by the fork server that run processes are forked from (``server/isolation.py``).

It imports the engine and warms it up (``server.warmup``) with ONE torch thread: a
process that has used OpenMP's thread pool cannot be forked safely, and each run's
child sets its own thread count. Every child then starts warm: its first metrics
arrive in tens of milliseconds instead of the seconds a cold import and first step take.
"""

import torch

torch.set_num_threads(1)

import server.runner  # noqa: E402,F401 - the engine, imported once for every child
from server.warmup import warm_up  # noqa: E402

warm_up()
