"""Training speed of the off-policy agents with memory beside SB3's memoryless DQN and SAC: env-steps per
CPU-second, at equal settings (same environment, environments, update frequency, learning rate, layers
after the memory, transitions per gradient step), measured interleaved in one process, medians over
rounds. ``python scripts/bench_off_policy.py [--steps N] [--rounds R] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from stable_baselines3 import DQN, SAC
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401  (registers the memory tasks)
from agents.off_policy import RecurrentDQN, RecurrentSAC
from rl_lstm.tooling import POSITIVE, machine_info, pin_threads

SEQ_LEN, BURN_IN, WINDOWS = 24, 4, 32
#: Transitions a gradient step learns from: the recurrent agents' loss steps, the MLP agents' batch.
TRANSITIONS = WINDOWS * (SEQ_LEN - BURN_IN)

# name -> (class, environment, keyword arguments); each recurrent row is followed by its baseline.
ROWS: dict[str, tuple[type, str, dict[str, Any]]] = {
    "sac (lstm, 64 units)": (RecurrentSAC, "PendulumNoVel-v1", dict(
        batch_size=WINDOWS, seq_len=SEQ_LEN, burn_in=BURN_IN,
        policy_kwargs=dict(cell="lstm", lstm_hidden_size=64, net_arch=[64, 64]))),
    "sac-mlp": (SAC, "PendulumNoVel-v1", dict(batch_size=TRANSITIONS, policy_kwargs=dict(net_arch=[64, 64]))),
    "dqn (lstm, 64 units)": (RecurrentDQN, "CartPoleNoVel-v1", dict(
        batch_size=WINDOWS, seq_len=SEQ_LEN, burn_in=BURN_IN, train_freq=4,
        policy_kwargs=dict(cell="lstm", lstm_hidden_size=64, net_arch=[64, 64]))),
    "dqn-mlp": (DQN, "CartPoleNoVel-v1", dict(batch_size=TRANSITIONS, train_freq=4,
                                               policy_kwargs=dict(net_arch=[64, 64]))),
}  # fmt: skip


def measure(name: str, steps: int, seed: int) -> float:
    """Env-steps per CPU-second of ``steps`` steps of learning after a warm-up of 500 steps (whose
    collection fills the buffer and is not timed)."""
    cls, env_id, kwargs = ROWS[name]
    model = cls("MlpPolicy" if cls in (DQN, SAC) else "MlpLstmPolicy", make_vec_env(env_id, n_envs=1, seed=seed),
                learning_starts=500, learning_rate=1e-3, seed=seed, device="cpu", **kwargs)  # fmt: skip
    with warnings.catch_warnings():  # the warm-up is meant to take no gradient step: it only fills the buffer
        warnings.filterwarnings("ignore", message="learning_starts=500: at or above", category=UserWarning)
        model.learn(500)
    start = time.process_time()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.process_time() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=POSITIVE, default=2000, help="timed steps of learning per measurement")
    parser.add_argument("--rounds", type=POSITIVE, default=3, help="interleaved rounds (rows shuffled in each)")
    parser.add_argument("--out", type=Path, default=Path("docs/off_policy"), help="folder of speed.json and speed.md")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    pin_threads(1)
    rates: dict[str, list[float]] = {name: [] for name in ROWS}
    order = list(ROWS)
    for r in range(args.rounds):
        random.Random(r).shuffle(order)
        for name in order:
            rates[name].append(measure(name, args.steps, seed=r))
    medians = {name: statistics.median(v) for name, v in rates.items()}
    pairs = {"sac (lstm, 64 units)": "sac-mlp", "dqn (lstm, 64 units)": "dqn-mlp"}
    record = {
        "machine": machine_info(),
        "command": " ".join(["python scripts/bench_off_policy.py", *argv]),
        "settings": dict(steps=args.steps, rounds=args.rounds, seq_len=SEQ_LEN, burn_in=BURN_IN, windows=WINDOWS,
                         transitions_per_gradient_step=TRANSITIONS, n_envs=1, threads=1),
        "env_steps_per_cpu_s": rates,
        "median": medians,
        "ratio_to_mlp": {name: medians[name] / medians[base] for name, base in pairs.items()},
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(record, indent=2))
    lines = [
        "# Off-policy training speed: memory against SB3's MLP agents",
        "",
        f"`{record['command']}` on {record['machine'].get('cpu_model', 'this CPU')}, one torch thread (load average "
        f"{record['machine'].get('load_average_at_start')} at the start: a shared machine; CPU-seconds), "
        f"{args.rounds} interleaved rounds of {args.steps} steps after a 500-step warm-up; medians. Equal settings: "
        f"one environment, learning rate 1e-3, layers [64, 64] after the memory, {TRANSITIONS} transitions per "
        f"gradient step ({WINDOWS} windows of {SEQ_LEN} with {BURN_IN} burn-in steps for the memory; a batch of "
        f"{TRANSITIONS} for the MLP).",
        "",
        "| agent | env | env-steps per CPU-second (median) | runs | ratio to its MLP baseline |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (_, env_id, _) in ROWS.items():
        ratio = record["ratio_to_mlp"].get(name)
        runs = ", ".join(f"{v:.0f}" for v in rates[name])
        lines.append(
            f"| {name} | {env_id} | {medians[name]:.0f} | {runs} | {'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    (args.out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return record
