"""The recurrent actor-critic policy whose memory is a cell from the ``rl_lstm`` registry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.type_aliases import Schedule

from rl_lstm import CELLS, RecurrentLayer, make_cell


class RNNMasks(NamedTuple):
    """Dropout masks of the actor's and the critic's memory, each ``(seq_len, n_seq, mask_width)``
    or None where that memory used none (no dropout, no critic memory, or eval mode)."""

    pi: th.Tensor | None
    vf: th.Tensor | None


class CellLstmPolicy(RecurrentActorCriticPolicy):
    """sb3-contrib's recurrent actor-critic policy with memory from the ``rl_lstm`` registry.

    Takes every argument of ``sb3_contrib``'s ``RecurrentActorCriticPolicy`` (``lstm_hidden_size``,
    ``shared_lstm``, ``enable_critic_lstm``, ``net_arch``...), plus:

    :param cell: registry name of the memory cell (``rl_lstm.CELLS``), e.g. ``"gal"``.
    :param dropout: the cell's dropout probability (zoneout probability for zoneout cells).
    :param ln_preact: LayerNorm cells only: normalise the gate pre-activations too.
    :param learnable: LayerNorm cells only: learn the LayerNorm gains and biases.

    With :class:`agents.RecurrentPPO` and :class:`agents.RecurrentA2C` the memory acts with its
    dropout masks on while collecting (per-episode masks resampled when each environment starts
    an episode), and the update replays the recorded masks, so the policy that is optimised is
    the policy that acted. Used with the stock ``sb3_contrib.RecurrentPPO``, which collects in
    eval mode and updates in train mode, dropout acts only in the update, with fresh masks.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        cell: str = "lstm",
        dropout: float = 0.0,
        ln_preact: bool = True,
        learnable: bool = True,
        lstm_hidden_size: int = 256,
        n_lstm_layers: int = 1,
        lstm_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if cell not in CELLS:
            raise ValueError(f"cell={cell!r}: expected one of {', '.join(CELLS)}")
        if n_lstm_layers != 1:
            raise ValueError(f"n_lstm_layers={n_lstm_layers!r}: the registry cells are single layers; expected 1")
        # Built before the parent so that bad values fail fast, with the cell's own messages.
        cell_kwargs = dict(dropout=dropout, ln_preact=ln_preact, learnable=learnable, **(lstm_kwargs or {}))
        make_cell(cell, 1, lstm_hidden_size, **cell_kwargs)
        self.cell_name = cell
        self.cell_kwargs = cell_kwargs
        super().__init__(
            observation_space, action_space, lr_schedule, *args,
            lstm_hidden_size=lstm_hidden_size, n_lstm_layers=1, **kwargs,
        )  # fmt: skip
        # The parent built nn.LSTM memories; swap in registry cells and rebuild the optimiser.
        self.lstm_actor = make_cell(cell, self.features_dim, lstm_hidden_size, **cell_kwargs)
        if self.lstm_critic is not None:
            self.lstm_critic = make_cell(cell, self.features_dim, lstm_hidden_size, **cell_kwargs)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            cell=self.cell_name,
            dropout=self.cell_kwargs["dropout"],
            ln_preact=self.cell_kwargs["ln_preact"],
            learnable=self.cell_kwargs["learnable"],
            lstm_hidden_size=self.lstm_output_dim,
        )
        return data

    # ------------------------------------------------------------------ masks
    def memories(self) -> list[RecurrentLayer]:
        return [m for m in (self.lstm_actor, self.lstm_critic) if m is not None]

    @contextmanager
    def masks_active(self, active: bool = True) -> Iterator[None]:
        """Within this block the memories act with their dropout masks even in eval mode
        (``predict`` and collection run in eval mode)."""
        before = [m.masks_in_eval for m in self.memories()]
        for m in self.memories():
            m.masks_in_eval = active
        try:
            yield
        finally:
            for m, b in zip(self.memories(), before, strict=True):
                m.masks_in_eval = b

    def last_masks(self) -> RNNMasks:
        """The masks the actor's and critic's memories used in their last call."""
        vf = self.lstm_critic.last_masks if self.lstm_critic is not None else None
        return RNNMasks(self.lstm_actor.last_masks, vf)

    # ------------------------------------------------------------------ memory
    def _process_sequence(  # type: ignore[override]
        self,
        features: th.Tensor,
        lstm_states: tuple[th.Tensor, th.Tensor],
        episode_starts: th.Tensor,
        lstm: RecurrentLayer,
        masks: th.Tensor | None = None,
    ) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
        """sb3-contrib's layout: ``features`` (n_seq * seq_len, F) sequence-major; the cell takes
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
        if self.lstm_critic is not None:
            x_vf = vf_features.reshape(seq_len, n_seq, -1)
            latent_vf, _ = self.lstm_critic(x_vf, lstm_states.vf, episode_starts, masks.vf, need_state=False)
            latent_vf = latent_vf.flatten(0, 1)
        elif self.shared_lstm:
            latent_vf = latent_pi.detach()  # as sb3-contrib: the critic's gradient stays out of the shared memory
        else:
            latent_vf = self.critic(vf_features)
        return latent_pi, latent_vf

    def evaluate_sequences(
        self,
        obs: th.Tensor,
        actions: th.Tensor,
        lstm_states: RNNStates,
        episode_starts: th.Tensor,
        masks: RNNMasks,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-probabilities and entropies of stored steps, time-major.

        obs: ``(seq_len, n_seq, *obs_shape)``; actions ``(seq_len * n_seq, ...)`` as the
        distribution takes them; lstm_states: the states before the first step, each
        ``(1, n_seq, H)``; episode_starts ``(seq_len, n_seq)``; masks: the masks used when the
        steps were collected. Returns ``(seq_len * n_seq,)`` tensors (row ``t * n_seq + j``).
        """
        features = self.extract_features(obs.flatten(0, 1))
        latent_pi, latent_vf = self._memory_sequences(features, lstm_states, episode_starts, masks)
        distribution = self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(latent_pi))
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf)).flatten()
        return values, distribution.log_prob(actions), distribution.entropy()

    def predict_values(  # type: ignore[override]
        self,
        obs: th.Tensor,
        lstm_states: tuple[th.Tensor, th.Tensor],
        episode_starts: th.Tensor,
        masks: th.Tensor | None = None,
    ) -> th.Tensor:
        """As sb3-contrib's, plus ``masks`` for the memory that computes the values (the
        critic's, or the actor's when it is shared)."""
        features = super(RecurrentActorCriticPolicy, self).extract_features(obs, self.vf_features_extractor)
        if self.lstm_critic is not None:
            latent_vf, _ = self._process_sequence(features, lstm_states, episode_starts, self.lstm_critic, masks)
        elif self.shared_lstm:
            latent_vf, _ = self._process_sequence(features, lstm_states, episode_starts, self.lstm_actor, masks)
            latent_vf = latent_vf.detach()
        else:
            latent_vf = self.critic(features)
        return self.value_net(self.mlp_extractor.forward_critic(latent_vf))
