"""Recurrent SAC: soft actor-critic whose actor and twin critic have memories (separate by default,
after Ni et al. 2022), trained on replayed windows from stored states; Box or Discrete actions."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update

from agents.checks import check_number
from agents.off_policy.base import BURN_IN, SEQ_LEN, RecurrentOffPolicyAlgorithm
from agents.off_policy.buffers import SequenceReplaySamples
from agents.off_policy.policies import CnnRecurrentSACPolicy, MultiInputRecurrentSACPolicy, RecurrentSACPolicy


def _masked_mean(x: th.Tensor, mask: th.Tensor) -> th.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


class RecurrentSAC(RecurrentOffPolicyAlgorithm):
    """Soft actor-critic (Haarnoja et al. 2018) with memories, as Ni et al. 2022 (*Recurrent model-free
    RL can be a strong baseline for many POMDPs*) built it: separate actor and critic memories, sequence
    replay; for Discrete actions the expectations over actions of Christodoulou 2019 (*Soft actor-critic
    for discrete action settings*). Automatic entropy tuning (``ent_coef="auto"``, SB3's).

    Arguments are SB3 ``SAC``'s (``buffer_size`` 100k by default: each step stores its memories'
    states), plus ``seq_len``, ``burn_in``, ``state_stride`` (see :mod:`agents.off_policy.buffers`) and the keywords of
    :class:`RecurrentSACPolicy` (``share_memory``, the memory's). ``target_entropy="auto"``: ``-dim(A)``
    for Box actions, ``0.7 log |A|`` for Discrete ones (a fixed share of the uniform policy's entropy,
    as pomdp-baselines). ``batch_size`` counts windows. Termination is not bootstrapped; truncation is,
    from the next observation with each memory's state carried on.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "CellLstmPolicy": RecurrentSACPolicy,
        "MlpLstmPolicy": RecurrentSACPolicy,
        "CnnLstmPolicy": CnnRecurrentSACPolicy,
        "MultiInputLstmPolicy": MultiInputRecurrentSACPolicy,
    }
    policy: RecurrentSACPolicy

    def __init__(
        self,
        policy: str | type[RecurrentSACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 1000,
        batch_size: int = 32,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        seq_len: int = SEQ_LEN,
        burn_in: int = BURN_IN,
        state_stride: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        self.ent_coef = ent_coef
        self.target_entropy = target_entropy
        self.target_update_interval = target_update_interval
        self.log_ent_coef: th.Tensor | None = None
        self.ent_coef_optimizer: th.optim.Optimizer | None = None
        super().__init__(
            policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq,
            gradient_steps, action_noise=None, policy_kwargs=policy_kwargs, stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log, verbose=verbose, device=device, seed=seed, sde_support=False,
            support_multi_env=True, supported_action_spaces=(spaces.Box, spaces.Discrete), seq_len=seq_len,
            burn_in=burn_in, state_stride=state_stride,
        )  # fmt: skip
        if _init_setup_model:
            self._setup_model()

    def _check_arguments(self) -> None:
        super()._check_arguments()
        coef = self.ent_coef
        if isinstance(coef, str):
            if not (coef == "auto" or coef.startswith("auto_")):
                raise ValueError(f"ent_coef={coef!r}: expected 'auto', 'auto_<initial value>' or a number >= 0")
        else:
            check_number("ent_coef", coef, 0.0)
        if self.target_entropy != "auto":
            check_number("target_entropy", self.target_entropy)

    def _setup_model(self) -> None:
        super()._setup_model()
        discrete = isinstance(self.action_space, spaces.Discrete)
        if self.target_entropy == "auto":
            self.target_entropy = (
                0.7 * float(np.log(self.action_space.n)) if discrete else -float(np.prod(self.action_space.shape))
            )
        else:
            self.target_entropy = float(self.target_entropy)
        if isinstance(self.ent_coef, str) and self.ent_coef.startswith("auto"):
            init = float(self.ent_coef.split("_")[1]) if "_" in self.ent_coef else 1.0
            if init <= 0:
                raise ValueError(f"ent_coef={self.ent_coef!r}: the initial value after 'auto_' must be positive")
            self.log_ent_coef = th.log(th.ones(1, device=self.device) * init).requires_grad_(True)
            self.ent_coef_optimizer = th.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1))
        else:
            self.ent_coef_tensor = th.tensor(float(self.ent_coef), device=self.device)

    def train(self, gradient_steps: int, batch_size: int = 32) -> None:
        self.policy.set_training_mode(True)
        optimizers = [self.policy.actor.optimizer, self.policy.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)
        logs: dict[str, list[float]] = {"actor_loss": [], "critic_loss": [], "ent_coef": [], "ent_coef_loss": [],
                                        "state_drift": []}  # fmt: skip
        for step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            self._train_step(data, logs)
            if (self._n_updates + step + 1) % self.target_update_interval == 0:
                polyak_update(self.policy.critic.parameters(), self.policy.critic_target.parameters(), self.tau)
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in logs.items():
            if values:
                self.logger.record(f"train/{key}", float(np.mean(values)))

    def _train_step(self, data: SequenceReplaySamples, logs: dict[str, list[float]]) -> None:
        policy, mask = self.policy, data.loss_mask
        latent_pi, latent_q, latent_target = policy.latents(data, self.burn_in)
        drift = self.state_drift(policy.actor.net, data) if self.burn_in else None
        if drift is not None:
            logs["state_drift"].append(drift)
        if policy.share_memory:
            latent_pi = latent_pi.detach()  # the shared memory learns from the critic's loss only
        discrete = policy.discrete
        actions, log_p = policy.sample(latent_pi)  # every position: the current policy's actions
        # Entropy coefficient: SB3's automatic tuning (log_p per step; discrete: its expectation).
        entropy_term = (log_p.exp() * log_p).sum(-1) if discrete else log_p
        if self.ent_coef_optimizer is not None:
            ent_coef = th.exp(self.log_ent_coef.detach())
            ent_loss = -_masked_mean(self.log_ent_coef * (entropy_term[:-1] + self.target_entropy).detach(), mask)
            logs["ent_coef_loss"].append(ent_loss.item())
            self.ent_coef_optimizer.zero_grad()
            ent_loss.backward()
            self.ent_coef_optimizer.step()
        else:
            ent_coef = self.ent_coef_tensor
        logs["ent_coef"].append(ent_coef.item())

        with th.no_grad():
            if discrete:
                probs = log_p.exp()
                q1_t, q2_t = policy.q(policy.critic_target, latent_target)
                next_v = (probs * (th.min(q1_t, q2_t) - ent_coef * log_p)).sum(-1)  # (L + 1, n)
            else:
                q1_t, q2_t = policy.q(policy.critic_target, latent_target, actions)
                next_v = th.min(q1_t, q2_t).squeeze(-1) - ent_coef * log_p
            targets = data.rewards + (1 - data.terminated) * self.gamma * next_v[1:]
        if discrete:
            q1, q2 = policy.q(policy.critic, latent_q[:-1])
            taken = data.actions.long()
            q1, q2 = q1.gather(-1, taken).squeeze(-1), q2.gather(-1, taken).squeeze(-1)
        else:
            q1, q2 = (q.squeeze(-1) for q in policy.q(policy.critic, latent_q[:-1], data.actions))
        critic_loss = 0.5 * (_masked_mean((q1 - targets) ** 2, mask) + _masked_mean((q2 - targets) ** 2, mask))
        logs["critic_loss"].append(critic_loss.item())
        policy.critic.optimizer.zero_grad()
        critic_loss.backward()
        policy.critic.optimizer.step()

        # Actor: the critic's memory latent is fixed (detached); its heads score the current policy.
        critic_latent = latent_q[:-1].detach()
        if discrete:
            q1_pi, q2_pi = policy.q(policy.critic, critic_latent)
            probs = log_p[:-1].exp()
            actor_loss = _masked_mean((probs * (ent_coef * log_p[:-1] - th.min(q1_pi, q2_pi).detach())).sum(-1), mask)
        else:
            q1_pi, q2_pi = policy.q(policy.critic, critic_latent, actions[:-1])
            actor_loss = _masked_mean(ent_coef * log_p[:-1] - th.min(q1_pi, q2_pi).squeeze(-1), mask)
        logs["actor_loss"].append(actor_loss.item())
        policy.actor.optimizer.zero_grad()
        actor_loss.backward()
        policy.actor.optimizer.step()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor", "critic", "critic_target"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "policy.actor.optimizer", "policy.critic.optimizer"]
        if self.ent_coef_optimizer is not None:
            return [*state_dicts, "ent_coef_optimizer"], ["log_ent_coef"]
        return state_dicts, ["ent_coef_tensor"]
