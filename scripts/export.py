"""Export a trained recurrent policy (a run folder or a model .zip) to ONNX or TorchScript as a step
function (obs, h, c, episode_start) -> (action, h_out, c_out).

``python scripts/export.py --help`` lists the options; the code is in ``agents.training.export``.
"""

import sys

from agents.training.export import main

if __name__ == "__main__":
    sys.exit(main())
