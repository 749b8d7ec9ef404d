"""What RecurrentDQN and RecurrentSAC share: the sequence replay buffer, step-by-step collection that
records every memory's state and dropout masks, and ``predict`` with a memory state."""

from __future__ import annotations

import io
import pathlib
import warnings
from copy import deepcopy
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.type_aliases import RolloutReturn, TrainFreq
from stable_baselines3.common.utils import obs_as_tensor, should_collect_more_steps
from stable_baselines3.common.vec_env import VecEnv

from agents.checks import check_integer, check_number, check_schedule
from agents.memory_init import with_horizon
from agents.off_policy.buffers import SequenceReplayBuffer
from agents.off_policy.policies import RecurrentOffPolicyPolicy

#: A replayed window's default length in steps (burn-in included) and its default burn-in (R2D2 used 80 and 40);
#: the one home of both defaults, read by RecurrentDQN and RecurrentSAC.
SEQ_LEN = 32
BURN_IN = 8


class RecurrentOffPolicyAlgorithm(OffPolicyAlgorithm):
    """SB3's off-policy algorithm with a memory: collection runs the policy one step at a time over all
    environments, in eval mode with the memories' dropout masks on (per-episode masks resampled when
    each environment starts an episode), and stores in a :class:`SequenceReplayBuffer` the state of
    every memory before each step and the masks it used. ``seq_len`` and ``burn_in`` shape the replayed
    windows (see :mod:`agents.off_policy.buffers`); ``batch_size`` counts windows; ``state_stride=k`` keeps
    the memory states of one step in k (a lean replay: 301 bytes a step instead of 1,069 at k=4 with two
    64-unit memories), the windows starting where a state is kept.
    """

    policy: RecurrentOffPolicyPolicy
    replay_buffer: SequenceReplayBuffer

    def __init__(
        self, *args: Any, seq_len: int = SEQ_LEN, burn_in: int = BURN_IN, state_stride: int = 1, **kwargs: Any
    ) -> None:
        self.seq_len = seq_len
        self.burn_in = burn_in
        self.state_stride = state_stride
        self._last_states: list[tuple[th.Tensor, th.Tensor]] | None = None
        super().__init__(*args, **kwargs)

    def _check_action_space(self) -> None:
        """Overridden where an algorithm takes only some action spaces."""

    def _check_arguments(self) -> None:
        """ValueError naming the first argument out of its range. Run by :meth:`_setup_model`, so a model
        loaded with changed arguments (``load(..., gamma=...)``) is checked as a new one is."""
        check_schedule("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_integer("buffer_size", self.buffer_size)
        check_integer("learning_starts", self.learning_starts, 0)
        check_integer("batch_size", self.batch_size)
        check_number("tau", self.tau, 0.0, 1.0)
        check_number("gamma", self.gamma, 0.0, 1.0)
        check_integer("gradient_steps", self.gradient_steps, -1)
        check_integer("target_update_interval", self.target_update_interval)
        check_integer("state_stride", self.state_stride)

    def _setup_model(self) -> None:
        self._check_action_space()
        self._check_arguments()
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(
            self.observation_space, self.action_space, self.lr_schedule,
            **with_horizon(self.policy_kwargs, self.env, self.seq_len),
        )  # fmt: skip
        self.policy = self.policy.to(self.device)
        memories = self.policy.stored_memories()
        self.replay_buffer = SequenceReplayBuffer(
            self.buffer_size, self.observation_space, self.action_space, self.policy.lstm_hidden_size, self.seq_len,
            self.burn_in, self.device, n_envs=self.n_envs, n_layers=self.policy.n_lstm_layers,
            mask_widths=tuple(m.memory.mask_width for m in memories), state_stride=self.state_stride,
        )  # fmt: skip
        self._last_states = self.policy.zero_states(self.n_envs)
        self._convert_train_freq()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_states"]

    def _setup_learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> tuple[int, BaseCallback]:
        total, callback = super()._setup_learn(total_timesteps, *args, **kwargs)
        if self._last_states is None or self._last_states[0][0].shape[1] != self.n_envs:
            self._last_states = self.policy.zero_states(self.n_envs)
        if self.learning_starts >= total:
            warnings.warn(
                f"learning_starts={self.learning_starts}: at or above the {total} steps this learn() call runs to, "
                "so it takes no gradient step; lower learning_starts or raise total_timesteps",
                UserWarning,
                stacklevel=3,
            )
        return total, callback

    # ------------------------------------------------------------------ acting
    def _explore(self, actions: np.ndarray, learning_starts: int) -> np.ndarray:
        """The buffer's actions for this step from the policy's (n_envs, ...): random during warm-up;
        DQN adds epsilon-greedy."""
        if self.num_timesteps < learning_starts:
            sampled = np.array([self.action_space.sample() for _ in range(self.n_envs)])
            return self.policy.scale_action(sampled) if isinstance(self.action_space, spaces.Box) else sampled
        return actions

    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: SequenceReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        """SB3's collection, with the memories stepped at every step (during warm-up too, so that stored
        states are those the policy would have) and their states and masks stored."""
        self.policy.set_training_mode(False)
        n_steps, n_episodes = 0, 0
        callback.on_rollout_start()
        memories = self.policy.stored_memories()
        while should_collect_more_steps(train_freq, n_steps, n_episodes):
            with th.no_grad(), self.policy.dropout_masks_on():
                obs = obs_as_tensor(self._last_obs, self.device)
                starts = th.as_tensor(self._last_episode_starts, dtype=th.float32, device=self.device)
                actions, acting_state = self.policy.act(obs, self._last_states[0], starts, deterministic=False)
                new_states, masks = [acting_state], [memories[0].memory.last_masks]
                for net, state in zip(memories[1:], self._last_states[1:], strict=True):
                    new_states.append(net.step(obs, state, starts, self.policy)[1])
                    masks.append(net.memory.last_masks)
            buffer_actions = self._explore(actions.cpu().numpy(), learning_starts)
            if isinstance(self.action_space, spaces.Box):
                buffer_actions = buffer_actions.reshape(self.n_envs, -1)
                env_actions = self.policy.unscale_action(buffer_actions)
            else:
                env_actions = buffer_actions.reshape(-1)
            new_obs, rewards, dones, infos = env.step(env_actions)
            self.num_timesteps += env.num_envs
            n_steps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                return RolloutReturn(n_steps * env.num_envs, n_episodes, continue_training=False)
            self._update_info_buffer(infos, dones)
            self._store(replay_buffer, buffer_actions, new_obs, rewards, dones, infos, new_states, masks)
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
            self._on_step()
            for done in dones:
                if done:
                    n_episodes += 1
                    self._episode_num += 1
                    if log_interval is not None and self._episode_num % log_interval == 0:
                        self.dump_logs()
        callback.on_rollout_end()
        return RolloutReturn(n_steps * env.num_envs, n_episodes, True)

    def _store(self, buffer, buffer_actions, new_obs, rewards, dones, infos, new_states, masks) -> None:  # noqa: ANN001
        """SB3's ``_store_transition`` (unnormalised observations and rewards, terminal observations as
        the next ones), plus the episode starts, the memory states before the step and its masks."""
        if self._vec_normalize_env is not None:
            new_obs_ = self._vec_normalize_env.get_original_obs()
            reward_ = self._vec_normalize_env.get_original_reward()
        else:
            self._last_original_obs, new_obs_, reward_ = self._last_obs, new_obs, rewards
        next_obs = deepcopy(new_obs_)
        for i, done in enumerate(dones):
            terminal = infos[i].get("terminal_observation")
            if done and terminal is not None:
                if self._vec_normalize_env is not None:
                    terminal = self._vec_normalize_env.unnormalize_obs(terminal)
                if isinstance(next_obs, dict):
                    for key in next_obs:
                        next_obs[key][i] = terminal[key]
                else:
                    next_obs[i] = terminal
        buffer.add(
            self._last_original_obs, next_obs, buffer_actions, reward_, dones, infos,
            episode_start=self._last_episode_starts, states=self._last_states, masks=masks,
        )  # fmt: skip
        self._last_obs = new_obs
        if self._vec_normalize_env is not None:
            self._last_original_obs = new_obs_
        self._last_episode_starts = dones
        self._last_states = new_states

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """SB3's, for the sequence buffer: it must match this model's memories (hidden size, layers, masks)."""
        buffer = load_from_pkl(path, self.verbose)
        expected = (self.policy.lstm_hidden_size, self.policy.n_lstm_layers, self.replay_buffer.mask_widths)
        if not isinstance(buffer, SequenceReplayBuffer):
            raise ValueError(f"replay buffer {path}: a {type(buffer).__name__}, expected a SequenceReplayBuffer")
        found = (buffer.hidden_size, buffer.n_layers, buffer.mask_widths)
        if found != expected:
            raise ValueError(
                f"replay buffer {path}: stores memories of (hidden size, layers, mask widths) {found}, "
                f"this model has {expected}"
            )
        buffer.device = self.device
        self.replay_buffer = buffer

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The policy's action and its acting memory's next state ``(h, c)``; pass ``episode_start``
        (1 where an episode begins) so that each episode starts from a reset memory."""
        return self.policy.predict(observation, state, episode_start, deterministic)

    def state_drift(self, net: Any, data: Any, memory: int = 0) -> float | None:
        """Mean |h| difference between the states stored at the windows' first loss steps and the ones the
        burn-in recomputed from earlier stored states with today's parameters (rows with a burn-in whose
        first loss step's state is kept); None without a burn-in."""
        rows = data.drift_rows
        if net.burned_state is None or not bool(rows.any()):
            return None
        stored = data.loss_states[memory][0][:, rows]
        return float((net.burned_state[0][:, rows] - stored).abs().mean())
