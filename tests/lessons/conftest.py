"""Lesson tests train real (small) networks: one thread each for torch and NumPy's BLAS.

On a shared 2-core machine a second thread buys nothing for these sizes, and oversubscribed threads
make a LeNet-5 step 5x slower (20 ms vs 115 ms measured under load) and a 2x256 MLP step far slower.
"""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits  # scikit-learn's dependency, so always installed


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(threads)
