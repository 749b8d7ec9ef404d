"""What recurrent PPO and A2C share: set-up and step-by-step collection that records the
memory states and the dropout masks each step was taken with."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from agents.buffers import SequenceDictRolloutBuffer, SequenceRolloutBuffer, chunk_lengths
from agents.checks import check_number, check_schedule
from agents.memory_init import with_horizon
from agents.policies import STOCK_POLICIES, CellLstmPolicy, CnnCellLstmPolicy, MultiInputCellLstmPolicy
from agents.type_aliases import SequenceSamples


@contextmanager
def _distribution_checks(enabled: bool) -> Iterator[None]:
    before = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(before)


class RecurrentOnPolicyAlgorithm(OnPolicyAlgorithm):
    """Base of :class:`agents.RecurrentPPO` and :class:`agents.RecurrentA2C`.

    Collection runs the policy one step at a time over all environments, in eval mode with the
    memories' dropout masks on, and records the memory state before each chunk and the masks of
    every step. ``seq_len`` is the length of the chunks the update replays (None: each environment's
    whole rollout, see :func:`agents.buffers.chunk_lengths`).

    Policies: ours by name (``CellLstmPolicy``, ``CnnCellLstmPolicy``, ``MultiInputCellLstmPolicy``)
    and under sb3-contrib's names (``MlpLstmPolicy``, ``CnnLstmPolicy``, ``MultiInputLstmPolicy``),
    so that a stock script runs with its import changed. sb3-contrib's own policy classes (as a
    model saved by its ``RecurrentPPO`` names them) are replaced by ours with ``lstm`` cells,
    which compute what its ``nn.LSTM`` does with the same parameters.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "CellLstmPolicy": CellLstmPolicy,
        "CnnCellLstmPolicy": CnnCellLstmPolicy,
        "MultiInputCellLstmPolicy": MultiInputCellLstmPolicy,
        "MlpLstmPolicy": CellLstmPolicy,
        "CnnLstmPolicy": CnnCellLstmPolicy,
        "MultiInputLstmPolicy": MultiInputCellLstmPolicy,
    }
    policy: CellLstmPolicy

    #: Whether the algorithm learns with invalid-action masks (:mod:`agents.maskable`): its rollout
    #: buffer keeps a row of masks per step, and collection reads them from the environments.
    action_masking: ClassVar[bool] = False

    def __init__(self, *args: Any, seq_len: int | None = None, **kwargs: Any) -> None:
        self.seq_len = seq_len
        self._use_masking = False
        self._last_lstm_states: RNNStates | None = None
        self.timings = {"collect": 0.0, "train": 0.0}
        super().__init__(*args, **kwargs)

    def _check_arguments(self) -> None:
        """ValueError naming the first argument out of its range. Run by :meth:`_setup_model`, so a model
        loaded with changed arguments (``load(..., ent_coef=...)``) is checked as a new one is."""
        check_schedule("learning_rate", self.learning_rate, 0.0, low_open=True)
        for name in ("gamma", "gae_lambda"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        check_schedule("ent_coef", self.ent_coef, 0.0)
        check_number("vf_coef", self.vf_coef, 0.0)
        check_number("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)

    def _setup_model(self) -> None:
        self._check_arguments()
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        stock = self.policy_class if self.policy_class in STOCK_POLICIES else None
        self.policy_class = STOCK_POLICIES.get(self.policy_class, self.policy_class)
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, CellLstmPolicy)):
            raise ValueError(
                f"policy: expected CellLstmPolicy or a subclass (or one of {', '.join(self.policy_aliases)}), "
                f"got {getattr(self.policy_class, '__name__', self.policy_class)}"
            )
        try:
            self.policy = self.policy_class(
                self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde,
                **with_horizon(self.policy_kwargs, self.env, self.n_steps),
            )  # fmt: skip
        except ValueError as e:
            if stock is None:
                raise
            raise ValueError(
                f"policy: sb3-contrib's {stock.__name__} with policy_kwargs={self.policy_kwargs!r} has no equivalent "
                f"here, so a model saved with it cannot load: {e}"
            ) from e
        self.policy = self.policy.to(self.device)
        if self.action_masking and self.policy.action_mask_dims == 0:
            raise ValueError(
                f"action space {self.action_space}: {type(self).__name__} masks Discrete, MultiDiscrete or "
                "MultiBinary actions; for Box actions use the algorithm without masks"
            )
        self._make_rollout_buffer()

    def _make_rollout_buffer(self) -> None:
        """The sequence buffer and zero memory states for ``n_envs`` environments."""
        memory = self.policy.lstm_actor
        zeros = th.zeros(memory.num_layers, self.n_envs, memory.hidden_size, device=self.device)
        self._last_lstm_states = RNNStates((zeros, zeros), (zeros, zeros))
        widths = tuple(m.mask_width if m is not None else 0 for m in (self.policy.lstm_actor, self.policy.lstm_critic))
        buffer_class = (
            SequenceDictRolloutBuffer if isinstance(self.observation_space, spaces.Dict) else SequenceRolloutBuffer
        )
        self.rollout_buffer = buffer_class(
            self.n_steps, self.observation_space, self.action_space, memory.hidden_size, widths,
            chunk_lengths(self.n_steps, self.seq_len, self._chunk_batch_size()),
            self.device, gae_lambda=self.gae_lambda, gamma=self.gamma, n_envs=self.n_envs, n_layers=memory.num_layers,
            action_mask_dims=self.policy.action_mask_dims if self.action_masking else 0,
        )  # fmt: skip

    def _chunk_batch_size(self) -> int | None:
        """The minibatch size, in steps, that chunks must fit (None: the whole rollout)."""
        return None

    def _check_masking(self, use_masking: bool) -> bool:
        """Whether collection reads action masks: ``use_masking``, after checking that the
        environments offer them (sb3-contrib's test: an ``action_masks`` method)."""
        if use_masking and self.env is not None and not is_masking_supported(self.env):
            spec = self.env.get_attr("spec", [0])[0]
            name = spec.id if spec is not None else type(self.env.get_attr("unwrapped", [0])[0]).__name__
            raise ValueError(
                f"env {name}: has no action_masks() method; {type(self).__name__} reads the invalid-action masks "
                "from it (as sb3-contrib's MaskablePPO): add the method, or wrap the environment in "
                "sb3_contrib.common.wrappers.ActionMasker, or call learn(..., use_masking=False)"
            )
        return bool(use_masking)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_lstm_states"]

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """Fill the buffer with ``n_rollout_steps`` steps of every environment (sb3-contrib's
        collection, plus the masks)."""
        assert isinstance(rollout_buffer, (SequenceRolloutBuffer, SequenceDictRolloutBuffer)), "needs a sequence buffer"
        assert self._last_obs is not None, "No previous observation was provided"
        start = time.perf_counter()
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        lstm_states = self._last_lstm_states

        # Argument checks of torch.distributions cost more than the memory at each step; a NaN
        # still fails loudly in the sampling. The masks act only in the policy's own calls, not in the
        # callbacks': a periodic evaluation runs mask-free and leaves the memories' masks as they were.
        action_masks = None
        with _distribution_checks(False):
            while n_steps < n_rollout_steps:
                if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                    self.policy.reset_noise(env.num_envs)
                with th.no_grad():
                    obs_tensor = obs_as_tensor(self._last_obs, self.device)
                    episode_starts = th.as_tensor(self._last_episode_starts, dtype=th.float32, device=self.device)
                    if self._use_masking:
                        action_masks = get_action_masks(env)  # (n_envs, action_mask_dims), for _last_obs
                    # The first step of a rollout checks the memories' arguments; the others have the same shapes.
                    checked = self.policy.argument_checks_off() if n_steps else nullcontext()
                    with self.policy.dropout_masks_on(), self.policy.action_masks_applied(action_masks), checked:
                        actions, values, log_probs, lstm_states = self.policy(obs_tensor, lstm_states, episode_starts)
                    masks = self.policy.last_masks()
                actions = actions.cpu().numpy()
                clipped_actions = actions
                if isinstance(self.action_space, spaces.Box):
                    if self.policy.squash_output:
                        clipped_actions = self.policy.unscale_action(clipped_actions)
                    else:
                        clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

                new_obs, rewards, dones, infos = env.step(clipped_actions)
                self.num_timesteps += env.num_envs
                callback.update_locals(locals())
                if not callback.on_step():
                    return False
                self._update_info_buffer(infos, dones)
                n_steps += 1
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.reshape(-1, 1)

                # Bootstrap from the value of the last observation of a truncated episode, with
                # that episode's state and masks (SB3 issue #633).
                for idx, done in enumerate(dones):
                    if (
                        done
                        and infos[idx].get("terminal_observation") is not None
                        and infos[idx].get("TimeLimit.truncated", False)
                    ):
                        terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                        source, value_masks = self.policy.value_state(lstm_states, masks)
                        row_mask = None if value_masks is None else value_masks[:, idx : idx + 1]
                        with th.no_grad(), self.policy.dropout_masks_on():
                            terminal_value = self.policy.predict_values(
                                terminal_obs,
                                (source[0][:, idx : idx + 1].contiguous(), source[1][:, idx : idx + 1].contiguous()),
                                th.zeros(1, device=self.device),
                                row_mask,
                            )[0]
                        rewards[idx] += self.gamma * terminal_value

                rollout_buffer.add(
                    self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs,
                    lstm_states=self._last_lstm_states, masks=masks, action_masks=action_masks,
                )  # fmt: skip
                self._last_obs = new_obs
                self._last_episode_starts = dones
                self._last_lstm_states = lstm_states

            with th.no_grad(), self.policy.dropout_masks_on():
                episode_starts = th.as_tensor(dones, dtype=th.float32, device=self.device)
                source, _ = self.policy.value_state(lstm_states)
                values = self.policy.predict_values(obs_as_tensor(new_obs, self.device), source, episode_starts)

        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        self.timings["collect"] += time.perf_counter() - start
        return True

    def replay_max_abs_logp_diff(self) -> float:
        """Largest |log pi_new - log pi_old| over the whole rollout, recomputed without gradients before
        the update changes the parameters: 0 up to rounding when the update replays collection exactly
        (same states, same masks). One forward pass over the rollout (a few percent of a PPO update)."""
        self.policy.set_training_mode(True)
        worst = 0.0
        with th.no_grad():
            for data in self.rollout_buffer.get(batch_size=None):
                _, log_prob, _ = self.evaluate_batch(data)
                worst = max(worst, (log_prob - data.old_log_prob).abs().max().item())
        return worst

    def evaluate_batch(self, data: SequenceSamples) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-probabilities and entropies of a minibatch of stored chunks, with the
        actions cast as the distribution takes them (SB3's buffers serve them as float32)."""
        actions = data.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        return self.policy.evaluate_sequences(
            data.observations, actions, data.lstm_states, data.episode_starts, data.masks, data.action_masks
        )

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``, plus ``action_masks`` as ``MaskablePPO.predict`` takes them: ``(n_envs,
        action_mask_dims)``, True where an action is allowed (e.g. ``get_action_masks(env)``)."""
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)

    def current_ent_coef(self) -> float:
        """The entropy coefficient of this update: ``ent_coef``, or its schedule at the remaining progress
        (as SB3 schedules the learning rate and the clip range), logged as ``train/ent_coef``."""
        value = float(FloatSchedule(self.ent_coef)(self._current_progress_remaining))
        self.logger.record("train/ent_coef", value)
        return value

    def _record_timings(self, train_seconds: float) -> None:
        self.timings["train"] += train_seconds
        self.logger.record("time/collect_s", self.timings["collect"], exclude="stdout")
        self.logger.record("time/train_s", self.timings["train"], exclude="stdout")
