"""Recurrent actor-critic policies whose memory is a stack of cells from the ``rl_lstm`` registry:
one per observation kind stock sb3-contrib serves (MLP, CNN, Dict)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableDistribution, make_masked_proba_distribution
from sb3_contrib.common.recurrent.policies import (
    RecurrentActorCriticCnnPolicy,
    RecurrentActorCriticPolicy,
    RecurrentMultiInputActorCriticPolicy,
)
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule

from agents.lean import log_prob_entropy
from agents.memory import MemoryStack
from agents.memory_init import check_horizon, init_memories_
from agents.policy_core import make_optimizer, masks_in_eval, memory_settings
from agents.type_aliases import RNNMasks, RNNStates
from rl_lstm.base import PlainAttributes


def flatten_steps(obs: PyTorchObs) -> PyTorchObs:
    """``(seq_len, n_seq, ...)`` -> ``(seq_len * n_seq, ...)``, for each key of Dict observations."""
    if isinstance(obs, dict):
        return {key: value.flatten(0, 1) for key, value in obs.items()}
    return obs.flatten(0, 1)


class CellLstmPolicy(PlainAttributes, RecurrentActorCriticPolicy):
    """sb3-contrib's recurrent actor-critic policy with memory from the ``rl_lstm`` registry.

    Takes every argument of ``sb3_contrib``'s ``RecurrentActorCriticPolicy`` (``lstm_hidden_size``,
    ``n_lstm_layers``, ``shared_lstm``, ``enable_critic_lstm``, ``lstm_kwargs``, ``net_arch``,
    ``features_extractor_class``, ``share_features_extractor``...), plus:

    :param cell: registry name of the memory cell (``rl_lstm.CELLS``), e.g. ``"gal"``.
    :param dropout: the cell's dropout probability (zoneout probability for zoneout cells); None: the
        cell's default (``rl_lstm.registry.default_dropout``: 0.1 for cells named for a dropout method).
    :param ln_preact: LayerNorm cells only: normalise the gate pre-activations too.
    :param learnable: LayerNorm cells only: learn the LayerNorm gains and biases.
    :param memory_init: how the memories' keep gates (forget gates, update gates, decays) start
        (:mod:`agents.memory_init`): None (the default: ``"spread"`` where the memory has one),
        ``"spread"`` (memory times log-uniform over 2 .. ``memory_horizon`` steps), ``"chrono"`` (uniform),
        ``"torch"`` (the cells' own initialisation) or a number (every keep gate's bias).
    :param memory_horizon: the longest dependency expected, in steps, for ``"spread"`` and ``"chrono"``; None: the
        algorithm's (the environment's episode limit, else its update's reach), else 128.
    :param chrono_init: deprecated: ``memory_init="chrono", memory_horizon=chrono_init``.

    Each memory (actor's, critic's) is a :class:`agents.memory.MemoryStack` of ``n_lstm_layers``
    cells, state ``(h, c)`` each ``(n_lstm_layers, batch, lstm_hidden_size)`` as ``nn.LSTM``'s.
    ``lstm_kwargs`` means what it means to ``nn.LSTM``: ``dropout`` between layers, ``bias``; it
    also takes the cell's own arguments (``dropout_method``...); anything else is rejected by name.

    With :class:`agents.RecurrentPPO` and :class:`agents.RecurrentA2C` the memory acts with its
    dropout masks on while collecting (per-episode masks resampled when each environment starts
    an episode), and the update replays the recorded masks, so the policy that is optimised is
    the policy that acted. Used with the stock ``sb3_contrib.RecurrentPPO``, which collects in
    eval mode and updates in train mode, dropout acts only in the update, with fresh masks.

    Invalid-action masks (Discrete, MultiDiscrete and MultiBinary actions) act as in sb3-contrib's
    ``MaskablePPO``: inside :meth:`action_masks_applied`, in :meth:`evaluate_sequences` and in
    :meth:`predict`, the distribution is sb3-contrib's maskable one with the invalid actions' logits
    set to a huge negative number. Without masks the distribution is SB3's own, as before.
    """

    plain_attributes = frozenset({"_action_masks"})

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        cell: str = "lstm",
        dropout: float | None = None,
        ln_preact: bool = True,
        learnable: bool = True,
        lstm_hidden_size: int = 256,
        n_lstm_layers: int = 1,
        lstm_kwargs: dict[str, Any] | None = None,
        memory_init: str | float | None = None,
        memory_horizon: int | None = None,
        chrono_init: int | None = None,
        **kwargs: Any,
    ) -> None:
        if chrono_init is not None:
            warnings.warn(
                "chrono_init=T is deprecated: use memory_init='chrono', memory_horizon=T", DeprecationWarning, 2
            )
            memory_init, memory_horizon = "chrono", check_horizon(chrono_init)
        # Bad values fail here, before the parent builds.
        cell_kwargs, memory_kwargs = memory_settings(
            cell, lstm_hidden_size, dropout, ln_preact, learnable, n_lstm_layers, lstm_kwargs, memory_init,
            memory_horizon,
        )  # fmt: skip
        self.cell_name = cell
        self.cell_kwargs = cell_kwargs
        super().__init__(
            observation_space, action_space, lr_schedule, *args,
            lstm_hidden_size=lstm_hidden_size, n_lstm_layers=1, **kwargs,
        )  # fmt: skip
        # The parent built nn.LSTM memories; swap in stacks of registry cells and rebuild the optimiser.
        self.lstm_kwargs = dict(lstm_kwargs or {})
        self.n_lstm_layers = n_lstm_layers
        self.lstm_hidden_state_shape = (n_lstm_layers, 1, lstm_hidden_size)
        self.lstm_actor = MemoryStack(cell, self.features_dim, lstm_hidden_size, **memory_kwargs)
        if self.lstm_critic is not None:
            self.lstm_critic = MemoryStack(cell, self.features_dim, lstm_hidden_size, **memory_kwargs)
        self.memory_init, self.memory_horizon = memory_init, memory_horizon
        init_memories_(self.memories(), memory_init, memory_horizon)
        self.optimizer = make_optimizer(self.optimizer_class, self.optimizer_kwargs, self.parameters(), lr_schedule)
        self._action_masks: th.Tensor | None = None
        self._masked_dist: MaskableDistribution | None = None

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        """SB3's features extractor, its size a Python int: SB3 sizes some spaces with a numpy integer
        (MultiDiscrete: the sum of ``nvec``), which the memory (and sb3-contrib's nn.LSTM) refuses."""
        extractor = super().make_features_extractor()
        extractor._features_dim = int(extractor.features_dim)
        return extractor

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            cell=self.cell_name,
            dropout=self.cell_kwargs["dropout"],
            ln_preact=self.cell_kwargs["ln_preact"],
            learnable=self.cell_kwargs["learnable"],
            lstm_hidden_size=self.lstm_output_dim,
            n_lstm_layers=self.n_lstm_layers,
            lstm_kwargs=self.lstm_kwargs,
            memory_init=self.memory_init,
            memory_horizon=self.memory_horizon,
            shared_lstm=self.shared_lstm,
            enable_critic_lstm=self.enable_critic_lstm,
            share_features_extractor=self.share_features_extractor,
        )
        return data

    # ------------------------------------------------------------------ masks
    def memories(self) -> list[MemoryStack]:
        return [m for m in (self.lstm_actor, self.lstm_critic) if m is not None]

    @contextmanager
    def dropout_masks_on(self, active: bool = True) -> Iterator[None]:
        """Within this block the memories act with their dropout masks even in eval mode
        (``predict`` and collection run in eval mode). Not the action masks: see
        :meth:`action_masks_applied`."""
        with masks_in_eval(self.memories(), active):
            yield

    def masks_active(self, active: bool = True) -> AbstractContextManager[None]:
        """Deprecated name of :meth:`dropout_masks_on` (the memories' ``masks_active`` is a flag)."""
        warnings.warn("policy.masks_active() is deprecated: use policy.dropout_masks_on()", DeprecationWarning, 2)
        return self.dropout_masks_on(active)

    @contextmanager
    def argument_checks_off(self) -> Iterator[None]:
        """Within this block the memories skip their per-call argument checks: for a caller that checked
        the arguments of its first call and makes many more of the same shapes (a rollout)."""
        for m in self.memories():
            m.check_args = False
        try:
            yield
        finally:
            for m in self.memories():
                m.check_args = True

    def args_checked(self) -> AbstractContextManager[None]:
        """Deprecated name of :meth:`argument_checks_off`."""
        warnings.warn("policy.args_checked() is deprecated: use policy.argument_checks_off()", DeprecationWarning, 2)
        return self.argument_checks_off()

    def last_masks(self) -> RNNMasks:
        """The masks the actor's and critic's memories used in their last call."""
        vf = self.lstm_critic.last_masks if self.lstm_critic is not None else None
        return RNNMasks(self.lstm_actor.last_masks, vf)

    # ------------------------------------------------------------------ action masks
    @property
    def action_mask_dims(self) -> int:
        """Columns of a row of action masks: ``n`` for Discrete(n), ``sum(nvec)`` for MultiDiscrete,
        ``2 n`` for MultiBinary(n) (as sb3-contrib's maskable buffers); 0 where actions cannot be masked."""
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return int(space.n)
        if isinstance(space, spaces.MultiDiscrete):
            return int(np.sum(space.nvec))
        if isinstance(space, spaces.MultiBinary):
            return 2 * int(np.prod(space.shape))
        return 0

    def check_action_masks(self, action_masks: np.ndarray | th.Tensor, rows: int) -> th.Tensor:
        """``action_masks`` as a bool tensor ``(rows, action_mask_dims)`` (True: the action is allowed),
        or a ValueError naming what was expected."""
        dims = self.action_mask_dims
        if dims == 0:
            raise ValueError(
                f"action_masks: {self.action_space} actions cannot be masked; masking takes Discrete, "
                "MultiDiscrete or MultiBinary actions"
            )
        masks = th.as_tensor(action_masks, device=self.device)
        if masks.numel() != rows * dims:
            raise ValueError(
                f"action_masks: expected {rows} row(s) of {dims} entries (one per choice of {self.action_space}), "
                f"got shape {tuple(masks.shape)}"
            )
        return masks.reshape(rows, dims).to(th.bool)

    @contextmanager
    def action_masks_applied(self, action_masks: np.ndarray | th.Tensor | None) -> Iterator[None]:
        """Within this block the policy's action distributions hide the actions whose mask is False
        (``action_masks``: one row per row of the batch, see :attr:`action_mask_dims`; None: no masks)."""
        before = self._action_masks
        self._action_masks = None if action_masks is None else th.as_tensor(action_masks, device=self.device)
        try:
            yield
        finally:
            self._action_masks = before

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        if self._action_masks is None:
            return super()._get_action_dist_from_latent(latent_pi)
        masks = self.check_action_masks(self._action_masks, latent_pi.shape[0])
        if self._masked_dist is None:
            self._masked_dist = make_masked_proba_distribution(self.action_space)
        distribution = self._masked_dist.proba_distribution(action_logits=self.action_net(latent_pi))
        distribution.apply_masking(masks)
        return distribution

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """sb3-contrib's ``predict``, plus ``action_masks`` (``(n_envs, action_mask_dims)``, True where an
        action is allowed; as ``MaskablePPO.predict`` takes them)."""
        with self.action_masks_applied(action_masks):
            return super().predict(observation, state, episode_start, deterministic)

    # ------------------------------------------------------------------ acting
    def forward(  # type: ignore[override]
        self, obs: PyTorchObs, lstm_states: RNNStates, episode_starts: th.Tensor, deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, RNNStates]:
        """sb3-contrib's forward (actions, values, log-probabilities, new states), with discrete actions
        sampled straight from the logits: the same numbers as its Categorical distribution, drawn from
        the same random stream, without building a distribution object at every step."""
        if self._action_masks is not None or not isinstance(self.action_dist, CategoricalDistribution):
            return super().forward(obs, lstm_states, episode_starts, deterministic)
        features = self.extract_features(obs)
        pi_features, vf_features = (features, features) if self.share_features_extractor else features
        latent_pi, states_pi = self._process_sequence(pi_features, lstm_states.pi, episode_starts, self.lstm_actor)
        latent_vf, states_vf = self._value_latent(
            vf_features, (latent_pi, states_pi),
            lambda memory: self._process_sequence(vf_features, lstm_states.vf, episode_starts, memory),
        )  # fmt: skip
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf))
        logits = self.action_net(self.mlp_extractor.forward_actor(latent_pi))
        log_pmf = logits - logits.logsumexp(-1, keepdim=True)  # as torch's Categorical normalises them
        if deterministic:
            actions = log_pmf.argmax(-1)
        else:
            actions = th.multinomial(log_pmf.softmax(-1), 1, True).squeeze(-1)
        log_prob = log_pmf.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return actions, values, log_prob, RNNStates(states_pi, states_vf)

    # ------------------------------------------------------------------ memory
    def _process_sequence(  # type: ignore[override]
        self,
        features: th.Tensor,
        lstm_states: tuple[th.Tensor, th.Tensor],
        episode_starts: th.Tensor,
        lstm: MemoryStack,
        masks: th.Tensor | None = None,
    ) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
        """sb3-contrib's layout: ``features`` (n_seq * seq_len, F) sequence-major; the memory takes
        the whole sequence, resets included, in one call instead of one call per step."""
        n_seq = lstm_states[0].shape[1]
        x = features.reshape(n_seq, -1, lstm.input_size).transpose(0, 1)  # (seq_len, n_seq, F)
        starts = episode_starts.reshape(n_seq, -1).transpose(0, 1)  # (seq_len, n_seq)
        out, states = lstm(x, lstm_states, starts, masks)
        return out.transpose(0, 1).flatten(0, 1), states

    def _memory_sequences(
        self,
        features: th.Tensor | tuple[th.Tensor, th.Tensor],
        lstm_states: RNNStates,
        episode_starts: th.Tensor,
        masks: RNNMasks,
    ) -> tuple[th.Tensor, th.Tensor]:
        """Time-major: features ``(seq_len * n_seq, F)`` (row ``t * n_seq + j``), starts
        ``(seq_len, n_seq)``; returns actor and critic latents ``(seq_len * n_seq, H)``."""
        seq_len, n_seq = episode_starts.shape
        pi_features, vf_features = (features, features) if self.share_features_extractor else features
        x = pi_features.reshape(seq_len, n_seq, -1)
        latent_pi, _ = self.lstm_actor(x, lstm_states.pi, episode_starts, masks.pi, need_state=False)
        latent_pi = latent_pi.flatten(0, 1)

        def critic_memory(memory: MemoryStack) -> tuple[th.Tensor, None]:
            x_vf = vf_features.reshape(seq_len, n_seq, -1)
            return memory(x_vf, lstm_states.vf, episode_starts, masks.vf, need_state=False)[0].flatten(0, 1), None

        latent_vf, _ = self._value_latent(vf_features, (latent_pi, None), critic_memory)
        return latent_pi, latent_vf

    def _value_latent(
        self,
        vf_features: th.Tensor,
        actor: tuple[th.Tensor, tuple[th.Tensor, th.Tensor] | None] | None,
        run_memory: Callable[[MemoryStack], tuple[th.Tensor, tuple[th.Tensor, th.Tensor] | None]],
    ) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor] | None]:
        """The one rule of which memory gives the value, for collection, :meth:`predict_values` and the update:
        the critic's own memory (``run_memory(self.lstm_critic)``), else with ``shared_lstm`` the actor's, its
        latent and state detached (the critic's gradient stays out of the shared memory, as sb3-contrib's),
        from ``actor`` (its latent and state where already computed) or ``run_memory(self.lstm_actor)``,
        else none: the MLP critic on the features, with the actor's state passed on."""
        if self.lstm_critic is not None:
            return run_memory(self.lstm_critic)
        if self.shared_lstm:
            latent, state = actor if actor is not None else run_memory(self.lstm_actor)
            return latent.detach(), None if state is None else (state[0].detach(), state[1].detach())
        return self.critic(vf_features), None if actor is None else actor[1]

    def value_state(
        self, lstm_states: RNNStates, masks: RNNMasks | None = None
    ) -> tuple[tuple[th.Tensor, th.Tensor], th.Tensor | None]:
        """The state (and the masks) of the memory that gives the value, out of both memories' (see
        :meth:`_value_latent`): the critic's where it has its own memory, else the actor's."""
        own = self.lstm_critic is not None
        return (lstm_states.vf if own else lstm_states.pi), (None if masks is None else masks.vf if own else masks.pi)

    def evaluate_sequences(
        self,
        obs: PyTorchObs,
        actions: th.Tensor,
        lstm_states: RNNStates,
        episode_starts: th.Tensor,
        masks: RNNMasks,
        action_masks: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-probabilities and entropies of stored steps, time-major.

        obs: ``(seq_len, n_seq, *obs_shape)`` (a dict of those for Dict observations); actions
        ``(seq_len * n_seq, ...)`` as the distribution takes them; lstm_states: the states before
        the first step, each ``(n_layers, n_seq, H)``; episode_starts ``(seq_len, n_seq)``; masks:
        the masks used when the steps were collected; action_masks: the invalid-action masks of the
        steps, ``(seq_len * n_seq, action_mask_dims)``, or None. Returns ``(seq_len * n_seq,)`` tensors
        (row ``t * n_seq + j``).
        """
        features = self.extract_features(flatten_steps(obs))
        latent_pi, latent_vf = self._memory_sequences(features, lstm_states, episode_starts, masks)
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf)).flatten()
        latent_pi = self.mlp_extractor.forward_actor(latent_pi)
        if action_masks is None and type(self.action_dist) is CategoricalDistribution:
            # The distribution's numbers without building one per minibatch (agents.lean).
            return values, *log_prob_entropy(self.action_net(latent_pi), actions)
        with self.action_masks_applied(action_masks):
            distribution = self._get_action_dist_from_latent(latent_pi)
        return values, distribution.log_prob(actions), distribution.entropy()

    def predict_values(  # type: ignore[override]
        self,
        obs: PyTorchObs,
        lstm_states: tuple[th.Tensor, th.Tensor],
        episode_starts: th.Tensor,
        masks: th.Tensor | None = None,
    ) -> th.Tensor:
        """As sb3-contrib's, plus ``masks`` for the memory that computes the values (the
        critic's, or the actor's when it is shared)."""
        # BasePolicy's extract_features: the critic's extractor alone, even when it is not shared.
        features = super(ActorCriticPolicy, self).extract_features(obs, self.vf_features_extractor)
        latent_vf, _ = self._value_latent(
            features, None, lambda memory: self._process_sequence(features, lstm_states, episode_starts, memory, masks)
        )
        return self.value_net(self.mlp_extractor.forward_critic(latent_vf))


class CnnCellLstmPolicy(CellLstmPolicy):
    """:class:`CellLstmPolicy` for image observations: SB3's ``NatureCNN`` features (images scaled
    by 1/255 unless ``normalize_images=False``, channel-last images transposed by the algorithm),
    as sb3-contrib's ``CnnLstmPolicy``."""

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any
    ) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputCellLstmPolicy(CellLstmPolicy):
    """:class:`CellLstmPolicy` for ``spaces.Dict`` observations: SB3's ``CombinedExtractor`` (a
    ``NatureCNN`` per image entry, the others flattened, all concatenated), as sb3-contrib's
    ``MultiInputLstmPolicy``."""

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any
    ) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


#: sb3-contrib's policy classes (which a model saved by its RecurrentPPO names) and ours for them:
#: ``nn.LSTM`` computes what a stack of ``lstm`` cells does, with the same parameters.
STOCK_POLICIES: dict[type, type[CellLstmPolicy]] = {
    RecurrentActorCriticPolicy: CellLstmPolicy,
    RecurrentActorCriticCnnPolicy: CnnCellLstmPolicy,
    RecurrentMultiInputActorCriticPolicy: MultiInputCellLstmPolicy,
}
