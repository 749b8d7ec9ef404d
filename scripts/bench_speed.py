"""Speed of every registered cell against nn.LSTM and torch.lstm_cell.

``python scripts/bench_speed.py --help`` lists the options; the code is in ``rl_lstm.bench.speed``.
"""

import sys

from rl_lstm.bench.speed import main

if __name__ == "__main__":
    sys.exit(main())
