"""The measurement behind agents.memory_init's default (docs/memory/memory_init.md).

RecurrentPPO as the command line runs an unknown task (8 envs, ``lstm``, 64 units, sb3-contrib's defaults),
the keep gates of both memories set after construction by one of the candidates, then ``learn(STEPS)`` and
100 deterministic episodes with balanced cues; prints one JSON line.

    python docs/memory/init_probe.py ENV VARIANT STEPS SEED

VARIANT: ``torch`` (PyTorch's initialisation), ``fbX`` (forget bias X on every unit), ``chrono-open`` (forget
bias ``log U(1, T - 1)``, input gates as PyTorch starts them: the default), ``chrono`` (the same with the input
bias at minus the forget bias, Tallec & Ollivier's), ``logspread`` (memory times log-uniform over 2..T), with T
the task's episode limit.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env

import agents
import envs

HIDDEN = 64


def keep_biases(variant: str, horizon: int, generator: torch.Generator) -> torch.Tensor | None:
    """The forget-gate biases of one layer for ``variant`` (None: leave PyTorch's)."""
    if variant == "torch":
        return None
    if variant.startswith("fb"):
        return torch.full((HIDDEN,), float(variant[2:]))
    if variant in ("chrono", "chrono-open"):
        return torch.log(torch.empty(HIDDEN).uniform_(1.0, horizon - 1, generator=generator))
    if variant == "logspread":
        tau = torch.exp(torch.empty(HIDDEN).uniform_(math.log(2.0), math.log(max(horizon, 3)), generator=generator))
        return torch.log(tau - 1)
    raise SystemExit(f"VARIANT {variant!r}: expected torch, fbX, chrono, chrono-open or logspread")


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    env_id, variant, steps, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    horizon = gym.spec(env_id).max_episode_steps
    model = agents.RecurrentPPO(
        "MlpLstmPolicy", make_vec_env(env_id, n_envs=8, seed=seed), seed=seed,
        policy_kwargs=dict(cell="lstm", lstm_hidden_size=HIDDEN, memory_init="torch"),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    for memory in model.policy.memories():
        for layer in memory.layers:
            bias = keep_biases(variant, horizon, generator)
            if bias is None:
                continue
            with torch.no_grad():
                layer.bias_ih[HIDDEN : 2 * HIDDEN] = 0.0
                layer.bias_hh[HIDDEN : 2 * HIDDEN] = bias
                if variant == "chrono":  # the input gate as closed as the forget gate keeps
                    layer.bias_ih[:HIDDEN] = 0.0
                    layer.bias_hh[:HIDDEN] = -bias
    start = time.time()
    model.learn(steps)
    seconds = time.time() - start
    env = make_vec_env(env_id, n_envs=1, seed=1000, wrapper_class=envs.BalancedCues)
    obs, state, episode_start = env.reset(), None, np.ones(1, bool)
    successes, returns = [], []
    while len(successes) < 100:  # the VecEnv resets itself: one reset, so the cues keep their turns
        total = 0.0
        while True:
            action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
            obs, reward, done, info = env.step(action)
            episode_start, total = done, total + float(reward[0])
            if done[0]:
                successes.append(bool(info[0].get("is_success")))
                returns.append(total)
                break
    print(json.dumps(dict(env=env_id, variant=variant, steps=steps, seed=seed, success=float(np.mean(successes)),
                          ret=float(np.mean(returns)), seconds=round(seconds, 1))), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
