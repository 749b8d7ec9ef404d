"""Training speed of RecurrentDQN and RecurrentSAC beside SB3's DQN and SAC with an MLP.

``python scripts/bench_off_policy.py --help`` lists the options; the code is in ``agents.off_policy.speed``.
"""

from agents.off_policy.speed import main

if __name__ == "__main__":
    main()
