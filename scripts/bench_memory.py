"""The memory benchmark: a sweep of every cell as the memory of recurrent PPO on the memory tasks.

``python scripts/bench_memory.py --help`` lists the options; the code is in ``agents.sweep.cli``.
"""

import sys

from agents.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
