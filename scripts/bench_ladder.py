"""The memory ladder: how far each row's memory reaches on the ladder's tasks (lengths 10 to 1000).

``python scripts/bench_ladder.py --help`` lists the options; the code is in ``agents.sweep.ladder``.
"""

import sys

from agents.sweep.ladder import main

if __name__ == "__main__":
    sys.exit(main())
