"""Recurrent A2C: one gradient step per rollout, over each environment's whole rollout."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance

from agents import lean
from agents.on_policy import RecurrentOnPolicyAlgorithm
from agents.policies import CellLstmPolicy

SelfRecurrentA2C = TypeVar("SelfRecurrentA2C", bound="RecurrentA2C")


class RecurrentA2C(RecurrentOnPolicyAlgorithm):
    """Advantage Actor-Critic (Mnih et al. 2016) with a recurrent policy whose memory is an
    ``rl_lstm`` cell.

    SB3 ``A2C``'s arguments and defaults (n_steps 5, lr 7e-4, RMSprop with alpha 0.99 and eps
    1e-5, gae_lambda 1, no advantage normalisation): one gradient step per rollout on
    ``-(A * log pi) + vf_coef * (R - V)^2 - ent_coef * H``, the whole rollout of every
    environment replayed as one batch of sequences from the recorded states and masks.
    """

    def __init__(
        self,
        policy: str | type[CellLstmPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float | Schedule = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = 1e-5,
        use_rms_prop: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        normalize_advantage: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        policy_kwargs = dict(policy_kwargs or {})
        if use_rms_prop and "optimizer_class" not in policy_kwargs:
            policy_kwargs["optimizer_class"] = th.optim.RMSprop
            policy_kwargs["optimizer_kwargs"] = dict(alpha=0.99, eps=rms_prop_eps, weight_decay=0)
        super().__init__(
            policy,
            env,
            seq_len=n_steps,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.normalize_advantage = normalize_advantage
        if _init_setup_model:
            self._setup_model()

    def loss(self, data) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """The A2C loss on a batch of stored sequences, and its parts."""
        values, log_prob, entropy = self.evaluate_batch(data)
        advantages = data.advantages
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(advantages * log_prob).mean()
        value_loss = F.mse_loss(data.returns, values)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = policy_loss + self.current_ent_coef() * entropy_loss + self.vf_coef * value_loss
        # Before the gradient step the recomputed log-probabilities are the collected ones.
        replay_diff = (log_prob - data.old_log_prob).abs().max().detach()
        parts = dict(policy_loss=policy_loss, value_loss=value_loss, entropy_loss=entropy_loss)
        return loss, dict(parts, replay_max_abs_logp_diff=replay_diff)

    def train(self) -> None:
        """One gradient step on the whole rollout."""
        start = time.perf_counter()
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        for data in self.rollout_buffer.get(batch_size=None):
            loss, parts = self.loss(data)
            self.policy.optimizer.zero_grad()
            loss.backward()
            lean.clip_grad_norm(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += 1
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        values = th.stack([value.detach().to(th.float64) for value in parts.values()]).tolist()  # one read
        for name, value in zip(parts, values, strict=True):
            self.logger.record(f"train/{name}", value)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self._record_timings(time.perf_counter() - start)

    def learn(
        self: SelfRecurrentA2C,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "RecurrentA2C",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRecurrentA2C:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
