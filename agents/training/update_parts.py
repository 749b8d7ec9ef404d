"""Where a PPO gradient step of ``agents.RecurrentPPO`` spends its time at a benchmark's shape
(``scripts/bench_train.py --parts``): the whole update divided by its gradient steps, beside the parts timed
on their own on one minibatch of the same rollout:

- ``memories``: the actor's and the critic's memory, forward and backward over the minibatch's chunks;
- ``policy layers``: SB3's MLP extractor and the action and value heads, forward and backward on its rows
  (the same modules stock sb3-contrib runs);
- ``optimizer``: the global-norm clip and the optimizer's step;
- ``rest``: what is left of the gradient step: the loss, autograd's bookkeeping, PPO's loop, the buffer, the
  replay check (one forward pass without gradients over the rollout per update), the logging, and a critic
  without its own memory.

The parts that neither memory nor SB3's layers take are the only time a faster update can still remove at
that shape; the first two are a floor for any implementation that runs the same modules.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch as th

from agents import lean
from agents.policies import flatten_steps

PARTS = ("memories", "policy layers", "optimizer", "rest")


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times)


def gradient_step_parts(model: Any, repeats: int = 30) -> dict[str, float]:
    """Milliseconds (medians over ``repeats``) of one gradient step of ``model``'s update and of its parts, on
    the rollout it holds (``model`` has learned at least one rollout). Leaves the parameters changed."""
    policy, buffer = model.policy, model.rollout_buffer
    data = next(iter(buffer.get(model.batch_size)))
    steps: list[int] = []  # the gradient steps the update takes (minibatches of whole chunks, early stops)
    counter = policy.optimizer.register_step_post_hook(lambda *args: steps.append(1))
    try:
        model.train()
    finally:
        counter.remove()
    steps_per_update = len(steps)
    update = _median_ms(model.train, max(3, repeats // 10), warmup=0) / steps_per_update
    policy.set_training_mode(True)
    starts = data.episode_starts  # (seq_len, n_seq), as the update takes them
    with th.no_grad():
        features = policy.extract_features(flatten_steps(data.observations))
    pi_x, vf_x = (features, features) if policy.share_features_extractor else features
    calls = [(policy.lstm_actor, pi_x, data.lstm_states.pi, data.masks.pi)]
    if policy.lstm_critic is not None:
        calls.append((policy.lstm_critic, vf_x, data.lstm_states.vf, data.masks.vf))

    def run_memories() -> None:  # as the update runs them: the stored states and the collected masks
        total = sum(
            memory(x.reshape(*starts.shape, -1), state, starts, masks, need_state=False)[0].sum()
            for memory, x, state, masks in calls
        )
        total.backward()

    rows = starts.numel()
    latent = th.randn(rows, policy.lstm_output_dim, requires_grad=True)

    def run_layers() -> None:
        latent_pi, latent_vf = policy.mlp_extractor(latent)
        (policy.action_net(latent_pi).sum() + policy.value_net(latent_vf).sum()).backward()

    params = list(policy.parameters())

    def run_optimizer() -> None:  # on gradients of the same shapes (their values do not change the cost)
        lean.clip_grad_norm(params, model.max_grad_norm)
        policy.optimizer.step()

    parts = {"memories": _median_ms(run_memories, repeats), "policy layers": _median_ms(run_layers, repeats)}
    for p in params:
        p.grad = th.zeros_like(p)
    parts["optimizer"] = _median_ms(run_optimizer, repeats)
    parts["rest"] = max(0.0, update - sum(parts.values()))
    return {"gradient step": update, **parts, "gradient steps per update": steps_per_update}
