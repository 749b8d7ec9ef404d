"""Recurrent DQN (R2D2-style): double DQN with n-step returns over replayed windows, each started from
its stored memory state and refreshed by a burn-in."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import LinearSchedule, get_parameters_by_name, polyak_update

from agents.checks import check_number
from agents.off_policy.base import BURN_IN, SEQ_LEN, RecurrentOffPolicyAlgorithm
from agents.off_policy.buffers import SequenceReplaySamples
from agents.off_policy.policies import CnnRecurrentDQNPolicy, MultiInputRecurrentDQNPolicy, RecurrentDQNPolicy


def n_step_targets(
    rewards: th.Tensor, terminated: th.Tensor, next_values: th.Tensor, ends: th.Tensor, gamma: float, n: int
) -> th.Tensor:
    """Targets ``(L, n_win)`` for every position j: ``sum_k gamma^k r_{j+k}`` over the ``n_j = min(n, end -
    j)`` steps up to the window's bootstrap position ``end``, plus ``gamma^{n_j} V(j + n_j)`` unless the
    episode terminated at step ``j + n_j - 1``.

    rewards, terminated ``(L, n_win)``; next_values ``(L + 1, n_win)``: the bootstrap value of each position's
    observation; ends ``(n_win,)``. Positions at or past ``end`` get meaningless targets (masked out).
    """
    length = rewards.shape[0]
    pos = th.arange(length, device=rewards.device)[:, None]  # (L, 1)
    horizon = th.clamp(ends[None, :] - pos, min=1, max=n)  # (L, n_win): n_j
    target = th.zeros_like(rewards)
    for k in range(n):
        idx = (pos + k).clamp(max=length - 1).expand_as(rewards)
        take = (k < horizon).to(rewards.dtype)
        target = target + take * gamma**k * rewards.gather(0, idx)
    last = (pos + horizon - 1).clamp(max=length - 1)
    boot = (pos + horizon).clamp(max=length)
    alive = 1.0 - terminated.gather(0, last)
    return target + alive * gamma ** horizon.to(rewards.dtype) * next_values.gather(0, boot)


class RecurrentDQN(RecurrentOffPolicyAlgorithm):
    """Deep Q-learning with a memory (Kapturowski et al. 2019, R2D2: *Recurrent experience replay in
    distributed reinforcement learning*: replay from the stored state, with the first steps of each
    window only refreshing it), double DQN targets (van Hasselt et al. 2016), n-step returns and
    SB3 DQN's epsilon-greedy schedule and hard target updates. Discrete actions only.

    Arguments are SB3 ``DQN``'s (``buffer_size`` 100k by default: each step stores its memory state),
    plus ``seq_len`` (positions of a replayed window, burn-in included), ``burn_in``, ``state_stride`` (keep
    one step's memory state in this many: a lean replay), ``n_steps`` (n-step
    returns; shorter at the end of a window) and the policy keywords of :class:`RecurrentDQNPolicy`.
    ``batch_size`` counts windows; a gradient step learns from up to ``batch_size * (seq_len - burn_in)``
    steps. Termination is not bootstrapped; truncation is, from the next observation with the memory
    state carried on.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "CellLstmPolicy": RecurrentDQNPolicy,
        "MlpLstmPolicy": RecurrentDQNPolicy,
        "CnnLstmPolicy": CnnRecurrentDQNPolicy,
        "MultiInputLstmPolicy": MultiInputRecurrentDQNPolicy,
    }
    policy: RecurrentDQNPolicy

    def __init__(
        self,
        policy: str | type[RecurrentDQNPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 1000,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        n_steps: int = 1,
        seq_len: int = SEQ_LEN,
        burn_in: int = BURN_IN,
        state_stride: int = 1,
        target_update_interval: int = 10000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.05,
        max_grad_norm: float = 10,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r}: expected a positive integer (1: one-step targets)")
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.exploration_fraction = exploration_fraction
        self.target_update_interval = target_update_interval
        self.max_grad_norm = max_grad_norm
        self.exploration_rate = 0.0
        self._n_calls = 0
        super().__init__(
            policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq,
            gradient_steps, action_noise=None, n_steps=n_steps, policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, verbose=verbose, device=device,
            seed=seed, sde_support=False, support_multi_env=True, seq_len=seq_len, burn_in=burn_in,
            state_stride=state_stride,
        )  # fmt: skip
        if _init_setup_model:
            self._setup_model()

    def _check_action_space(self) -> None:
        if not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(
                f"action space {self.action_space}: RecurrentDQN takes Discrete actions; "
                "for Box actions use RecurrentSAC"
            )

    def _check_arguments(self) -> None:
        super()._check_arguments()
        for name in ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        check_number("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)

    def _setup_model(self) -> None:
        super()._setup_model()
        self.batch_norm_stats = get_parameters_by_name(self.policy.q_net, ["running_"])
        self.batch_norm_stats_target = get_parameters_by_name(self.policy.q_net_target, ["running_"])
        self.exploration_schedule = LinearSchedule(
            self.exploration_initial_eps, self.exploration_final_eps, self.exploration_fraction
        )

    def _on_step(self) -> None:
        """SB3 DQN's: hard target update every ``target_update_interval`` steps, epsilon schedule."""
        self._n_calls += 1
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.policy.q_net.parameters(), self.policy.q_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self.exploration_rate = self.exploration_schedule(self._current_progress_remaining)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def _explore(self, actions: np.ndarray, learning_starts: int) -> np.ndarray:
        actions = super()._explore(actions, learning_starts)
        # numpy's global generator, seeded by SB3's set_random_seed (as SB3's DQN draws its epsilon).
        random = np.random.rand(self.n_envs) < self.exploration_rate  # noqa: NPY002
        if random.any():
            actions = actions.copy()
            actions[random] = np.random.randint(0, int(self.action_space.n), size=int(random.sum()))  # noqa: NPY002
        return actions

    def window_q_values(self, data: SequenceReplaySamples) -> th.Tensor:
        """The online network's Q-values ``(L + 1, n, n_actions)`` over a batch of windows."""
        return self.policy.q_values(self.policy.q_net, data, self.burn_in)

    def train(self, gradient_steps: int, batch_size: int = 32) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses, drifts = [], []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            q_all = self.window_q_values(data)  # (L + 1, n, A)
            if self.burn_in:
                drifts.append(self.state_drift(self.policy.q_net.net, data))
            with th.no_grad():
                q_target = self.policy.q_values(self.policy.q_net_target, data, self.burn_in)
                best = q_all.argmax(-1, keepdim=True)  # double DQN: the online network chooses
                next_values = q_target.gather(-1, best).squeeze(-1)  # (L + 1, n)
                targets = n_step_targets(
                    data.rewards, data.terminated, next_values, data.ends, self.gamma, self.n_steps
                )
            q = q_all[:-1].gather(-1, data.actions.long()).squeeze(-1)  # (L, n)
            mask = data.loss_mask
            loss = (F.smooth_l1_loss(q, targets, reduction="none") * mask).sum() / mask.sum().clamp(min=1)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.q_net.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
        drifts = [d for d in drifts if d is not None]
        if drifts:
            self.logger.record("train/state_drift", float(np.mean(drifts)))

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "q_net", "q_net_target"]
