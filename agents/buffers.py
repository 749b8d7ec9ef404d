"""A rollout buffer that keeps each environment's steps in order and serves them as sequences.

sb3-contrib's ``RecurrentRolloutBuffer`` cuts the rollout at every episode start and zero-pads
the pieces to one length. This buffer instead cuts each environment's ``n_steps`` into chunks of
``seq_len`` steps and serves minibatches of whole chunks, time-major: no padding, and episode
starts inside a chunk are handled by the cell (it zeroes that row's state). Each chunk starts
from the recorded memory state, and the dropout masks used at collection come with it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.buffers import RolloutBuffer

from agents.policies import RNNMasks


class SequenceSamples(NamedTuple):
    """A minibatch of ``n_seq`` chunks of ``seq_len`` steps, time-major.

    observations ``(seq_len, n_seq, *obs_shape)``; actions ``(seq_len * n_seq, *action_shape)``;
    old_values, old_log_prob, advantages, returns: ``(seq_len * n_seq,)`` (row ``t * n_seq + j``);
    lstm_states: the memory state before each chunk's first step, each ``(1, n_seq, H)``;
    episode_starts ``(seq_len, n_seq)``; masks: the collection-time masks, ``(seq_len, n_seq, W)``.
    """

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    lstm_states: RNNStates
    episode_starts: th.Tensor
    masks: RNNMasks


class SequenceRolloutBuffer(RolloutBuffer):
    """Rollout buffer recording memory states and dropout masks, sampled as sequence chunks.

    :param hidden_size: the memory's hidden size.
    :param mask_widths: columns of the actor's and the critic's masks (0 where none are recorded).
    :param seq_len: steps per chunk; must divide ``buffer_size`` (``n_steps``).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        hidden_size: int,
        mask_widths: tuple[int, int] = (0, 0),
        seq_len: int | None = None,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
    ) -> None:
        if isinstance(observation_space, spaces.Dict):
            raise ValueError("observation_space: Dict observations are not supported yet; flatten them first")
        self.hidden_size = hidden_size
        self.mask_widths = mask_widths
        self.seq_len = buffer_size if seq_len is None else seq_len
        if buffer_size % self.seq_len:
            raise ValueError(f"seq_len={self.seq_len}: expected a divisor of n_steps={buffer_size}")
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        super().reset()
        shape = (self.buffer_size, self.n_envs, self.hidden_size)
        # states[k] is (n_steps, n_envs, H): h_pi, c_pi, h_vf, c_vf before each step
        self.states = [np.zeros(shape, dtype=np.float32) for _ in range(4)]
        self.masks = [
            np.zeros((self.buffer_size, self.n_envs, w), dtype=np.float32) if w else None for w in self.mask_widths
        ]

    def add(self, *args, lstm_states: RNNStates, masks: RNNMasks, **kwargs) -> None:  # type: ignore[override]
        """``lstm_states``: the memory states before this step, each ``(1, n_envs, H)``;
        ``masks``: the masks used at this step, each ``(1, n_envs, W)`` or None."""
        for store, state in zip(self.states, (*lstm_states.pi, *lstm_states.vf), strict=True):
            store[self.pos] = state[0].cpu().numpy()
        for store, mask in zip(self.masks, masks, strict=True):
            if store is not None:
                store[self.pos] = mask[0].cpu().numpy()
        super().add(*args, **kwargs)

    def _chunks(self, array: np.ndarray) -> th.Tensor:
        """(n_steps, n_envs, *shape) -> (seq_len, n_chunks, *shape), chunk ``k * n_envs + e``
        holding steps ``k * seq_len ...`` of env ``e``."""
        n_steps, n_envs, *shape = array.shape
        chunks = array.reshape(n_steps // self.seq_len, self.seq_len, n_envs, *shape).swapaxes(0, 1)
        return self.to_torch(np.ascontiguousarray(chunks.reshape(self.seq_len, -1, *shape)))

    def get(self, batch_size: int | None = None) -> Generator[SequenceSamples, None, None]:  # type: ignore[override]
        """Minibatches of ``batch_size // seq_len`` chunks in random order (all chunks when None)."""
        assert self.full, "Rollout buffer must be full before sampling from it"
        n_chunks = self.buffer_size // self.seq_len * self.n_envs
        per_batch = n_chunks if batch_size is None else batch_size // self.seq_len
        if per_batch < 1:
            raise ValueError(f"batch_size={batch_size}: expected at least seq_len={self.seq_len}")
        if not self.generator_ready:  # chunk the rollout once, for all epochs
            self._chunked = self._chunk_all(n_chunks)
            self.generator_ready = True
        data, first, masks = self._chunked
        # One batch of everything needs no shuffle (and draws no random numbers).
        shuffle = th.randperm if per_batch < n_chunks else th.arange
        order = shuffle(n_chunks, device=self.device)
        for start in range(0, n_chunks, per_batch):
            idx = order[start : start + per_batch]
            d = {k: v.index_select(1, idx) for k, v in data.items()}
            states = first.index_select(1, idx).unsqueeze(1)  # (4, 1, n_seq, H)
            yield SequenceSamples(
                observations=d["observations"],
                actions=d["actions"].flatten(0, 1),
                old_values=d["old_values"].flatten(),
                old_log_prob=d["old_log_prob"].flatten(),
                advantages=d["advantages"].flatten(),
                returns=d["returns"].flatten(),
                lstm_states=RNNStates((states[0], states[1]), (states[2], states[3])),
                episode_starts=d["episode_starts"],
                masks=RNNMasks(*(None if m is None else m.index_select(1, idx) for m in masks)),
            )

    def _chunk_all(self, n_chunks: int) -> tuple[dict[str, th.Tensor], th.Tensor, list[th.Tensor | None]]:
        """The whole rollout as chunks: per-step tensors (seq_len, n_chunks, ...), the states before
        each chunk (4, n_chunks, H) and the masks (seq_len, n_chunks, W)."""
        data = {
            "observations": self._chunks(self.observations),
            "actions": self._chunks(self.actions),
            "old_values": self._chunks(self.values),
            "old_log_prob": self._chunks(self.log_probs),
            "advantages": self._chunks(self.advantages),
            "returns": self._chunks(self.returns),
            "episode_starts": self._chunks(self.episode_starts),
        }
        first = self.to_torch(np.stack([s[:: self.seq_len].reshape(n_chunks, -1) for s in self.states]))
        masks = [None if m is None else self._chunks(m) for m in self.masks]
        return data, first, masks
