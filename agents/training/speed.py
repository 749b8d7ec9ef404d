"""Training speed: env-steps per second of our recurrent PPO / A2C against stock sb3-contrib.

    python scripts/bench_train.py [--budget 15360] [--threads 1] [--repeats 3] [--out results/train]

Same environment and hyperparameters side by side in one run (CartPole-v1, 8 envs, n_steps 128,
batch_size 256, n_epochs 10, 256 units), collection and update timed separately, reported as
ratios to the reference row of each block:

- ``ppo``: stock ``sb3_contrib.RecurrentPPO`` (nn.LSTM) against ``agents.RecurrentPPO`` with every
  registry cell (dropout 0.1, masks on);
- ``a2c``: stock RecurrentPPO configured as A2C (one epoch on the whole rollout, RMSprop, lr 7e-4,
  gae_lambda 1, no advantage normalisation, no clipping) against ``agents.RecurrentA2C``, with
  A2C's n_steps 5 and with the ppo block's 128;
- ``mlp64``: SB3 PPO with an MLP against ``agents.RecurrentPPO`` with a 64-unit ``lstm``.

Rates are env-steps per CPU-second of the process (``time.process_time``): with one torch thread
and in-process environments that is the uncontended wall-clock rate, and it stays meaningful on a
machine shared with other work; wall-clock rates are recorded beside them. With several threads
CPU time adds up over threads, so the 2-thread table reports wall-clock rates.

Each run learns for ``--budget`` steps from the same seed, so every row sees episodes of similar
lengths (stock's cost grows with episode length: it pads sequences and steps nn.LSTM one step at
a time whenever a sequence holds an episode start, so the budget moves the ratios: it is stated).
The rows run interleaved: in each round every row's model learns one PPO rollout's worth of steps
(``8 x 128``), in an order rotated from round to round, so that a change in the machine's load
falls on every row alike; each repeat is a fresh set of models. The report gives medians over the
repeats with their ranges, the load average seen at every round (with a warning when the machine
was busy beyond this run) and the routine of the compiled kernel's recurrent products
(``RL_LSTM_GEMM``, :func:`rl_lstm.kernel.gemm_path`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from sb3_contrib import RecurrentPPO as SB3RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from agents import RecurrentA2C, RecurrentPPO
from agents.training.update_parts import PARTS, gradient_step_parts
from rl_lstm import CELLS, kernel
from rl_lstm.registry import has_dropout_method
from rl_lstm.tooling import NON_NEGATIVE, POSITIVE, describe_machine, machine_info, pin_threads, probability


@dataclass(frozen=True)
class Shape:
    """The environment and the rollout every row runs: CartPole-v1's shape by default; the memory ladder's
    with ``--env PassiveTMaze-L100-v0 --n-envs 64 --batch-size 128 --hidden-size 64`` (sb3-contrib's defaults
    there), and rollouts of a whole 1000-step episode with ``--n-steps 1024``."""

    env: str = "CartPole-v1"
    n_envs: int = 8
    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 10

    def ppo_kwargs(self) -> dict[str, int]:
        return dict(n_steps=self.n_steps, batch_size=self.batch_size, n_epochs=self.n_epochs)

    @property
    def round_steps(self) -> int:
        """Env-steps each row learns per round: one PPO rollout."""
        return self.n_envs * self.n_steps


BLOCKS = ("ppo", "a2c", "mlp64")
#: 1-minute load average above which the report warns that other work shared the machine (this run
#: keeps one core busy itself).
LOADED = 1.5
A2C_AS_PPO = dict(
    n_epochs=1, learning_rate=7e-4, gae_lambda=1.0, normalize_advantage=False,
    clip_range=1e9, max_grad_norm=0.5, policy_kwargs=dict(optimizer_class=th.optim.RMSprop,
                                                          optimizer_kwargs=dict(alpha=0.99, eps=1e-5)),
)  # fmt: skip


@dataclass
class Row:
    """One configuration to time."""

    block: str
    name: str
    algo: type
    policy: str
    kwargs: dict[str, Any]
    reference: bool = False
    results: list[dict[str, float]] = field(default_factory=list)


def rows(
    cells: list[str],
    dropout: float,
    hidden: int,
    seq_lens: tuple[int, ...] = (32,),
    blocks: tuple[str, ...] = BLOCKS,
    a2c_n_steps: tuple[int, ...] = (5, 128),
    shape: Shape = Shape(),
) -> list[Row]:
    out = []
    ppo_kwargs = shape.ppo_kwargs()
    if "ppo" in blocks:
        out.append(Row("ppo", "stock RecurrentPPO (nn.LSTM)", SB3RecurrentPPO, "MlpLstmPolicy",
                       dict(ppo_kwargs, policy_kwargs=dict(lstm_hidden_size=hidden)), reference=True))  # fmt: skip
        for seq_len in seq_lens:
            for cell in cells:
                p = dict(cell=cell, dropout=dropout if has_dropout_method(cell) else 0.0, lstm_hidden_size=hidden)
                out.append(Row("ppo", f"agents.RecurrentPPO {cell}, seq_len {seq_len}", RecurrentPPO, "CellLstmPolicy",
                               dict(ppo_kwargs, seq_len=seq_len, policy_kwargs=p)))  # fmt: skip
    for n_steps in a2c_n_steps if "a2c" in blocks else ():  # A2C's own default, and the PPO block's rollout
        block = f"a2c n_steps={n_steps}"
        stock_a2c = dict(A2C_AS_PPO, n_steps=n_steps, batch_size=n_steps * shape.n_envs,
                         policy_kwargs=dict(A2C_AS_PPO["policy_kwargs"], lstm_hidden_size=hidden))  # fmt: skip
        out.append(Row(block, "stock RecurrentPPO as A2C (nn.LSTM)", SB3RecurrentPPO, "MlpLstmPolicy", stock_a2c,
                       reference=True))  # fmt: skip
        out.append(Row(block, "agents.RecurrentA2C lstm", RecurrentA2C, "CellLstmPolicy",
                       dict(n_steps=n_steps, policy_kwargs=dict(cell="lstm", lstm_hidden_size=hidden))))  # fmt: skip
    if "mlp64" in blocks:
        out.append(Row("mlp64", "SB3 PPO MLP (64, 64)", PPO, "MlpPolicy",
                       dict(ppo_kwargs, policy_kwargs=dict(net_arch=[64, 64])), reference=True))  # fmt: skip
        out.append(Row("mlp64", "agents.RecurrentPPO lstm 64", RecurrentPPO, "CellLstmPolicy",
                       dict(ppo_kwargs, seq_len=32, policy_kwargs=dict(cell="lstm", lstm_hidden_size=64))))  # fmt: skip
    return out


def timed(algo: type) -> type:
    """A subclass of ``algo`` that adds up the CPU seconds spent collecting and updating."""

    class Timed(algo):
        def _setup_model(self) -> None:
            super()._setup_model()
            self.bench_times = {"collect": 0.0, "train": 0.0}

        def collect_rollouts(self, *args, **kwargs):
            start = time.process_time()
            try:
                return super().collect_rollouts(*args, **kwargs)
            finally:
                self.bench_times["collect"] += time.process_time() - start

        def train(self) -> None:
            start = time.process_time()
            super().train()
            self.bench_times["train"] += time.process_time() - start

    Timed.__name__ = f"Timed{algo.__name__}"
    return Timed


def load_average() -> float | None:
    """The 1-minute load average, or None where the system has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_interleaved(rs: list[Row], budget: int, threads: int, seed: int, shape: Shape = Shape()) -> list[float | None]:
    """One repeat: a fresh model per row, all learning ``budget`` steps in interleaved rounds; appends
    each row's result to ``row.results`` and returns the load average seen at each round."""
    pin_threads(threads)
    models, envs, loads = [], [], []
    for row in rs:
        env = make_vec_env(shape.env, n_envs=shape.n_envs, seed=seed)
        envs.append(env)
        models.append(timed(row.algo)(row.policy, env, seed=seed, device="cpu", **row.kwargs))
    wall, cpu = [0.0] * len(rs), [0.0] * len(rs)
    for rnd in range(-(-budget // shape.round_steps)):
        loads.append(load_average())
        shift = rnd % len(rs)
        for i in list(range(len(rs)))[shift:] + list(range(len(rs)))[:shift]:
            model = models[i]
            steps = min(shape.round_steps, budget - model.num_timesteps)
            if steps <= 0:
                continue
            start, cpu_start = time.perf_counter(), time.process_time()
            model.learn(steps, reset_num_timesteps=rnd == 0)
            wall[i] += time.perf_counter() - start
            cpu[i] += time.process_time() - cpu_start
    for i, (row, model) in enumerate(zip(rs, models, strict=True)):
        envs[i].close()
        row.results.append({
            "steps": model.num_timesteps, "wall_s": wall[i], "cpu_s": cpu[i],
            "collect_s": model.bench_times["collect"], "train_s": model.bench_times["train"],
            "steps_per_s": model.num_timesteps / wall[i], "steps_per_cpu_s": model.num_timesteps / cpu[i],
        })  # fmt: skip
    return loads


def step_parts(rs: list[Row], seed: int, shape: Shape, threads: int) -> dict[str, dict[str, float]]:
    """:func:`agents.training.update_parts.gradient_step_parts` of every ``agents.RecurrentPPO`` row, each a
    fresh model after one rollout."""
    pin_threads(threads)
    out = {}
    for row in rs:
        if row.algo is not RecurrentPPO:
            continue
        env = make_vec_env(shape.env, n_envs=shape.n_envs, seed=seed)
        model = row.algo(row.policy, env, seed=seed, device="cpu", **row.kwargs)
        model.learn(shape.round_steps)
        out[row.name] = gradient_step_parts(model)
        env.close()
        print(f"[parts] {row.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in out[row.name].items()), flush=True)
    return out


def _parts_table(parts: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "## Where a gradient step's time goes",
        "",
        "Milliseconds of CPU time per gradient step (medians): the update divided by its gradient steps, and the "
        "parts timed on their own on one minibatch of the same rollout (`agents.training.update_parts`): the two "
        "memories forward and backward, SB3's MLP extractor and heads forward and backward (the same modules "
        "stock runs), the gradient clip and the optimizer's step; the rest is the loss, autograd, PPO's loop, the "
        "buffer and the replay check (one forward pass over the rollout per update).",
        "",
        "| configuration | gradient step | " + " | ".join(PARTS) + " | gradient steps per update |",
        "| --- | --- | " + " | ".join("---" for _ in PARTS) + " | --- |",
    ]
    for name, p in parts.items():
        cells = " | ".join(f"{p[k]:.2f}" for k in ("gradient step", *PARTS))
        lines.append(f"| {name} | {cells} | {p['gradient steps per update']:.0f} |")
    return [*lines, ""]


def _shape_text(shape: dict[str, Any] | None) -> str:
    if shape is None:  # a record from before the shape was an option: CartPole-v1's
        shape = asdict(Shape())
    return (
        f"{shape['env']}, {shape['n_envs']} envs, n_steps {shape['n_steps']}, batch {shape['batch_size']}, "
        f"{shape['n_epochs']} epochs. "
    )


def report(all_rows: dict[int, list[Row]], settings: dict[str, Any]) -> str:
    loads = [x for x in settings.get("load_averages", []) if x is not None]
    lines = [
        "# Training speed",
        "",
        f"Machine: {describe_machine(settings['machine'])}. {_shape_text(settings.get('shape'))}"
        f"Budget {settings['budget']} env-steps per run, "
        f"{settings.get('repeats_done', settings['repeats'])} of {settings['repeats']} repeat(s) of interleaved "
        "rounds, "
        f"medians (min-max over the repeats). "
        f"Recurrent products of the compiled kernel: {settings.get('gemm_path', 'unknown')} "
        f"(`RL_LSTM_GEMM`). Command: `{settings['command']}`",
        "",
    ]
    if loads:
        lines += [
            f"Load average (1 min) over the rounds: median {statistics.median(loads):.1f}, "
            f"min {min(loads):.1f}, max {max(loads):.1f}.",
            "",
        ]
        if statistics.median(loads) > LOADED:
            lines += [
                f"**Warning: the machine was busy with other work (load above {LOADED} with this run's one "
                "core): the rates are low and noisy; read the ratios, taken side by side.**",
                "",
            ]
    for threads, rs in all_rows.items():
        lines += [f"## {threads} torch thread(s)", ""]
        key = "steps_per_cpu_s" if threads == 1 else "steps_per_s"
        unit = "env-steps per CPU-s" if threads == 1 else "env-steps/s (wall)"
        for block in dict.fromkeys(r.block for r in rs):
            block_rows = [r for r in rs if r.block == block]
            ref = next(r for r in block_rows if r.reference)
            ref_sps = statistics.median(x[key] for x in ref.results)
            lines += [
                f"### {block}",
                "",
                f"| configuration | {unit} (min-max) | collect CPU-s | update CPU-s | x reference |",
                "| --- | --- | --- | --- | --- |",
            ]
            for r in block_rows:
                sps = [x[key] for x in r.results]
                med = statistics.median(sps)
                lines.append(
                    f"| {r.name} | {med:.0f} ({min(sps):.0f}-{max(sps):.0f}) "
                    f"| {statistics.median(x['collect_s'] for x in r.results):.1f} "
                    f"| {statistics.median(x['train_s'] for x in r.results):.1f} | {med / ref_sps:.2f} |"
                )
            lines.append("")
    if settings.get("parts"):
        lines += _parts_table(settings["parts"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=POSITIVE, default=15_360, help="Env-steps each run learns for.")
    p.add_argument("--threads", type=POSITIVE, nargs="+", default=[1], help="torch thread counts to measure.")
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS), help="Cells of the ppo block.")
    p.add_argument(
        "--dropout", type=probability, default=0.1, help="Dropout of the cells named for a dropout method (masks on).",
    )
    p.add_argument("--hidden-size", type=POSITIVE, default=256, help="Hidden units of the recurrent rows.")
    p.add_argument("--repeats", type=POSITIVE, default=3, help="Runs per row (each a fresh set of models).")
    p.add_argument(
        "--seq-lens", type=POSITIVE, nargs="+", default=[32], help="Chunk lengths of the ppo block's cell rows."
    )
    p.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=BLOCKS, help="Blocks of rows to run.")
    p.add_argument("--a2c-n-steps", type=POSITIVE, nargs="+", default=[5, 128], help="n_steps of the a2c blocks.")
    default = Shape()
    p.add_argument("--env", default=default.env, help="Gymnasium id every row runs (import envs registers the tasks).")
    p.add_argument("--n-envs", type=POSITIVE, default=default.n_envs, help="Environments of every row.")
    p.add_argument("--n-steps", type=POSITIVE, default=default.n_steps, help="Rollout length of the ppo rows.")
    p.add_argument("--batch-size", type=POSITIVE, default=default.batch_size, help="Minibatch of the ppo rows.")
    p.add_argument("--n-epochs", type=POSITIVE, default=default.n_epochs, help="Epochs of the ppo rows.")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    p.add_argument("--out", type=Path, default=Path("results/train"))
    p.add_argument("--quick", action="store_true", help="Tiny budget, two cells, one thread count (for CI).")
    p.add_argument(
        "--parts", action="store_true",
        help="Also time where a gradient step of each agents.RecurrentPPO row goes (agents.training.update_parts).",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.budget, args.threads, args.cells, args.hidden_size, args.repeats = 2048, [1], ["lstm", "gal"], 32, 1
    import envs  # noqa: F401 (registers the memory tasks)

    if args.env not in gym.registry:
        p.error(f"--env {args.env!r}: not a registered Gymnasium id")
    shape = Shape(args.env, args.n_envs, args.n_steps, args.batch_size, args.n_epochs)
    pin_threads(args.threads[0])  # the machine's description names the first thread count measured
    settings = {
        "budget": args.budget, "repeats": args.repeats, "threads": args.threads, "cells": args.cells,
        "dropout": args.dropout, "hidden_size": args.hidden_size, "seq_lens": args.seq_lens, "blocks": args.blocks,
        "a2c_n_steps": args.a2c_n_steps, "shape": asdict(shape), "gemm_path": kernel.gemm_path(), "load_averages": [],
        "machine": machine_info(),
        "command": "python scripts/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }  # fmt: skip
    print(f"machine: {settings['machine']}", flush=True)
    all_rows: dict[int, list[Row]] = {}
    for threads in args.threads:
        rs = rows(args.cells, args.dropout, args.hidden_size, tuple(args.seq_lens), tuple(args.blocks),
                  tuple(args.a2c_n_steps), shape)  # fmt: skip
        all_rows[threads] = rs
        for rep in range(args.repeats):
            settings["load_averages"] += run_interleaved(rs, args.budget, threads, args.seed, shape)
            settings["repeats_done"] = rep + 1
            for r in rs:
                res = r.results[-1]
                print(f"[{threads} thr, rep {rep}] {r.name}: {res['steps_per_cpu_s']:.0f} steps/CPU-s "
                      f"(collect {res['collect_s']:.1f} s, update {res['train_s']:.1f} s)", flush=True)  # fmt: skip
            write(args.out, all_rows, settings)  # after every repeat: a run cut short keeps what it measured
    if args.parts:
        settings["parts"] = step_parts(all_rows[args.threads[0]], args.seed, shape, args.threads[0])
        write(args.out, all_rows, settings)
    print(report(all_rows, settings))
    return 0


def write(out: Path, all_rows: dict[int, list[Row]], settings: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "settings": settings,
        "rows": {
            str(t): [{k: v for k, v in asdict(r).items() if k not in ("algo", "kwargs")} for r in rs if r.results]
            for t, rs in all_rows.items()
        },
    }
    (out / "train_speed.json").write_text(json.dumps(data, indent=2, default=str))
    (out / "train_speed.md").write_text(report(all_rows, settings))
