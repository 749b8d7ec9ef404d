"""Speed of the compiled chunk kernel against the Python path, nn.LSTM and torch.lstm_cell.

``python scripts/bench_kernel.py --help`` lists the options; the code is in ``rl_lstm.bench.kernel``.
"""

import sys

from rl_lstm.bench.kernel import main

if __name__ == "__main__":
    sys.exit(main())
