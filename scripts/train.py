"""Train a recurrent agent (PPO, A2C, DQN or SAC) whose memory is a cell of the rl_lstm registry, or a baseline.

``python scripts/train.py --help`` lists the options; the code is in ``agents.training.cli``.
"""

import sys

from agents.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
