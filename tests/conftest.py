"""One torch thread for the tests: their results do not depend on it (docs/threads.md), and on a busy
2-core machine a second OpenMP thread that spins waiting for a descheduled partner makes them many times
slower."""

import torch

torch.set_num_threads(1)
