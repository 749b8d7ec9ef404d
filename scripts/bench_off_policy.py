"""Training speed of RecurrentDQN and RecurrentSAC beside SB3's DQN and SAC with an MLP.

``python scripts/bench_off_policy.py --help`` lists the options; the code is in ``agents.training.off_policy_speed``.
"""

from agents.training.off_policy_speed import main

if __name__ == "__main__":
    main()
