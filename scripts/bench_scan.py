"""Speed of the linear-recurrence memories against the lstm cell (update) and torch.gru_cell (collection).

``python scripts/bench_scan.py --help`` lists the options; the code is in ``rl_lstm.bench.scan``.
"""

import sys

from rl_lstm.bench.scan import main

if __name__ == "__main__":
    sys.exit(main())
