"""Search the hyperparameters of a recurrent agent and its memory with Optuna.

``python scripts/tune.py --help`` lists the options; the code is in ``agents.tuning.cli``.
"""

import sys

from agents.tuning.cli import main

if __name__ == "__main__":
    sys.exit(main())
