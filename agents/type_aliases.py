"""The tuples the recurrent agents pass around (sb3-contrib keeps its own in
``sb3_contrib.common.recurrent.type_aliases``; its ``RNNStates`` is used as is)."""

from __future__ import annotations

from typing import NamedTuple

import torch as th
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.type_aliases import TensorDict

__all__ = ["RNNMasks", "RNNStates", "SequenceSamples"]


class RNNMasks(NamedTuple):
    """Dropout masks of the actor's and the critic's memory, each ``(seq_len, n_seq, mask_width)``
    or None where that memory used none (no dropout, no critic memory, or eval mode)."""

    pi: th.Tensor | None
    vf: th.Tensor | None


class SequenceSamples(NamedTuple):
    """A minibatch of ``n_seq`` chunks of ``seq_len`` steps, time-major.

    observations ``(seq_len, n_seq, *obs_shape)`` (a dict of such tensors for Dict observations);
    actions ``(seq_len * n_seq, *action_shape)``, float32 as SB3's buffers serve them;
    old_values, old_log_prob, advantages, returns: ``(seq_len * n_seq,)`` (row ``t * n_seq + j``);
    lstm_states: the memory state before each chunk's first step, each ``(n_layers, n_seq, H)``;
    episode_starts ``(seq_len, n_seq)``; masks: the collection-time masks, ``(seq_len, n_seq, W)``;
    action_masks: the invalid-action masks of the steps, ``(seq_len * n_seq, action_mask_dims)``, or
    None where the algorithm keeps none.
    """

    observations: th.Tensor | TensorDict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    lstm_states: RNNStates
    episode_starts: th.Tensor
    masks: RNNMasks
    action_masks: th.Tensor | None = None
