"""lstms.pth's capacity benchmark for every registered cell.

``python scripts/bench_capacity.py --help`` lists the options; the code is in ``rl_lstm.bench.capacity``.
"""

import sys

from rl_lstm.bench.capacity import main

if __name__ == "__main__":
    sys.exit(main())
