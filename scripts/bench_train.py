"""Training speed of recurrent PPO / A2C against stock sb3-contrib.

``python scripts/bench_train.py --help`` lists the options; the code is in ``agents.training.speed``.
"""

import sys

from agents.training.speed import main

if __name__ == "__main__":
    sys.exit(main())
