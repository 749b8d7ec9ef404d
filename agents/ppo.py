"""Recurrent PPO over sequence chunks, replaying the dropout masks used at collection."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance

from agents import lean
from agents.checks import check_integer, check_number, check_schedule
from agents.on_policy import RecurrentOnPolicyAlgorithm
from agents.policies import CellLstmPolicy

SelfRecurrentPPO = TypeVar("SelfRecurrentPPO", bound="RecurrentPPO")


class RecurrentPPO(RecurrentOnPolicyAlgorithm):
    """PPO (clip) with a recurrent policy whose memory is an ``rl_lstm`` cell.

    The arguments and defaults are ``sb3_contrib.RecurrentPPO``'s, plus ``seq_len``: the update
    replays each environment's rollout in chunks of ``seq_len`` steps, each chunk starting from
    the memory state recorded at collection, with the dropout masks recorded at collection, and
    gradients do not cross a chunk boundary (stored-state truncated backpropagation through time).
    Before the first gradient step the ratio of new to old probabilities is therefore exactly 1
    (logged as ``train/replay_max_abs_logp_diff``).

    ``seq_len=None`` (the default) replays each environment's whole rollout as one chunk, so that
    credit reaches as far back as stock sb3-contrib's sequences (up to ``n_steps``); a minibatch then
    holds ``round(batch_size / n_steps)`` rollouts, at least one (:func:`agents.buffers.chunk_lengths`).
    A ``seq_len`` you set must divide ``n_steps`` and ``batch_size``; a minibatch holds whole chunks,
    about ``batch_size`` steps.
    """

    def __init__(
        self,
        policy: str | type[CellLstmPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 128,
        batch_size: int = 128,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float | Schedule = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        seq_len: int | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            seq_len=seq_len,
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
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        if _init_setup_model:
            self._setup_model()

    def _chunk_batch_size(self) -> int | None:
        return self.batch_size

    def _check_arguments(self) -> None:
        super()._check_arguments()
        check_integer("n_epochs", self.n_epochs)
        check_schedule("clip_range", self.clip_range, 0.0, low_open=True)
        if self.clip_range_vf is not None:
            check_schedule("clip_range_vf", self.clip_range_vf, 0.0, low_open=True)
        if self.target_kl is not None:
            check_number("target_kl", self.target_kl, 0.0, low_open=True)

    def _setup_model(self) -> None:
        super()._setup_model()
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def train(self) -> None:
        """Update the policy on the stored rollout: n_epochs passes over minibatches of chunks."""
        start = time.perf_counter()
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        ent_coef = self.current_ent_coef()
        params = list(self.policy.parameters())
        # Per minibatch: policy loss, value loss, entropy loss, clip fraction, as tensors read once at the end.
        stats: list[th.Tensor] = []
        replay_diff = self.replay_max_abs_logp_diff()  # same parameters, same masks: the ratio must be 1
        continue_training = True

        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for data in self.rollout_buffer.get(self.batch_size):
                values, log_prob, entropy = self.evaluate_batch(data)
                advantages = data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                ratio = th.exp(log_prob - data.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()

                if clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = data.old_values + th.clamp(values - data.old_values, -clip_range_vf, clip_range_vf)
                value_loss = F.mse_loss(data.returns, values_pred)
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                loss = policy_loss + ent_coef * entropy_loss + self.vf_coef * value_loss

                with th.no_grad():
                    log_ratio = log_prob - data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio)
                    approx_kl_divs.append(approx_kl_div)
                    clip_fraction = th.mean((th.abs(ratio - 1) > clip_range).to(ratio.dtype))
                    stats.append(th.stack([policy_loss, value_loss, entropy_loss, clip_fraction]).detach())
                if self.target_kl is not None and approx_kl_div.item() > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div.item():.2f}")
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                lean.clip_grad_norm(params, self.max_grad_norm)
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

        pg_loss, value_loss_mean, entropy_loss_mean, clip_fraction = (
            th.stack(stats).mean(0).tolist() if stats else [float("nan")] * 4
        )
        approx_kl = th.stack(approx_kl_divs).mean().item() if approx_kl_divs else float("nan")
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", entropy_loss_mean)
        self.logger.record("train/policy_gradient_loss", pg_loss)
        self.logger.record("train/value_loss", value_loss_mean)
        self.logger.record("train/approx_kl", approx_kl)
        self.logger.record("train/clip_fraction", clip_fraction)
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/replay_max_abs_logp_diff", replay_diff)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        self._record_timings(time.perf_counter() - start)

    def learn(
        self: SelfRecurrentPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "RecurrentPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRecurrentPPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
