"""Rollout buffers that keep each environment's steps in order and serve them as sequences.

sb3-contrib's ``RecurrentRolloutBuffer`` cuts the rollout at every episode start and zero-pads
the pieces to one length. These buffers instead cut each environment's ``n_steps`` into chunks
(see :func:`chunk_lengths`) and serve minibatches of whole chunks, time-major: no padding, and
episode starts inside a chunk are handled by the memory (it zeroes that row's state). Each chunk
starts from the recorded memory state, and the dropout masks used at collection come with it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from agents.type_aliases import RNNMasks, RNNStates, SequenceSamples


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def chunk_lengths(n_steps: int, seq_len: int | None = None, batch_size: int | None = None) -> tuple[int, ...]:
    """The lengths of the chunks that cover each environment's ``n_steps``, in order.

    ``seq_len`` None (the default of the algorithms): the whole rollout, one chunk of ``n_steps``, so that
    gradients reach as far back as stock sb3-contrib's sequences do (up to ``n_steps``, cut only at episode
    starts, which the memory handles inside a chunk here). A minibatch then holds ``round(batch_size /
    n_steps)`` environments' rollouts, at least one. Shorter chunks cut the gradient between a cue and the
    step that needs it: on the memory ladder's Recall and PassiveTMaze tasks at 20-100 steps, chunks of at
    most 32 steps (this function's earlier default) kept the agent at the memoryless level where whole
    rollouts learned (docs/guide/long_memory.md).

    ``seq_len`` set: ``n_steps // seq_len`` chunks of ``seq_len`` steps; it must divide ``n_steps``
    (a ``seq_len`` of ``n_steps`` or more means the whole rollout, one chunk). With ``batch_size``
    set, it must be a multiple of ``seq_len`` too (minibatches of whole chunks).
    """
    n_steps = _check_positive("n_steps", n_steps)
    if batch_size is not None:
        batch_size = _check_positive("batch_size", batch_size)
    if seq_len is None:
        return (n_steps,)
    seq_len = min(_check_positive("seq_len", seq_len), n_steps)
    if n_steps % seq_len:
        raise ValueError(
            f"seq_len={seq_len}: expected a positive divisor of n_steps={n_steps}, or seq_len=None for the whole "
            "rollout as one chunk"
        )
    if batch_size is not None and batch_size % seq_len:
        raise ValueError(f"batch_size={batch_size}: expected a multiple of seq_len={seq_len}")
    return (seq_len,) * (n_steps // seq_len)


class _SequenceStorage:
    """What both sequence buffers add to SB3's rollout buffers: the memory state before each
    chunk, the masks of every step, and sampling by chunks.

    :param hidden_size: the memory's hidden size.
    :param mask_widths: columns of the actor's and the critic's masks (0 where none are recorded).
    :param chunks: the lengths of the chunks the update replays, summing to ``buffer_size``
        (:func:`chunk_lengths` makes them from a ``seq_len``); None: the whole rollout, one chunk.
    :param n_layers: layers of the memory (states are ``(n_layers, n_envs, hidden_size)``).
    :param action_mask_dims: columns of a step's invalid-action masks (sb3-contrib's maskable buffers'
        ``mask_dims``); 0: none are kept.
    """

    observations: Any
    actions: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        hidden_size: int,
        mask_widths: tuple[int, int] = (0, 0),
        chunks: Sequence[int] | None = None,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        n_layers: int = 1,
        action_mask_dims: int = 0,
    ) -> None:
        self.hidden_size = hidden_size
        self.action_mask_dims = action_mask_dims
        self.n_layers = n_layers
        self.mask_widths = mask_widths
        lengths = (buffer_size,) if chunks is None else tuple(_check_positive("chunk length", n) for n in chunks)
        if sum(lengths) != buffer_size:
            raise ValueError(f"chunks={chunks!r}: expected chunk lengths summing to n_steps={buffer_size}")
        self.chunk_lengths = lengths
        self._starts = np.cumsum((0, *lengths[:-1]))  # first step of each chunk
        self._chunk_of_start = {int(s): k for k, s in enumerate(self._starts)}
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)  # type: ignore[call-arg]

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        shape = (len(self.chunk_lengths), self.n_layers, self.n_envs, self.hidden_size)
        # states[k]: h_pi, c_pi, h_vf, c_vf before the first step of each chunk
        self.states = [np.zeros(shape, dtype=np.float32) for _ in range(4)]
        self.masks = [
            np.zeros((self.buffer_size, self.n_envs, w), dtype=np.float32) if w else None for w in self.mask_widths
        ]
        # All actions allowed where a step brings no masks (learn(use_masking=False)), as sb3-contrib does.
        dims = self.action_mask_dims
        self.action_masks = np.ones((self.buffer_size, self.n_envs, dims), dtype=np.float32) if dims else None

    def add(
        self, *args: Any, lstm_states: RNNStates, masks: RNNMasks, action_masks: np.ndarray | None = None, **kwargs: Any
    ) -> None:
        """``lstm_states``: the memory states before this step, each ``(n_layers, n_envs, H)``;
        ``masks``: the masks used at this step, each ``(1, n_envs, W)`` or None; ``action_masks``: the
        step's invalid-action masks ``(n_envs, action_mask_dims)`` or None."""
        if action_masks is not None:
            if self.action_masks is None:
                raise ValueError("action_masks: this buffer keeps none (action_mask_dims=0)")
            self.action_masks[self.pos] = np.asarray(action_masks).reshape(self.n_envs, self.action_mask_dims)  # type: ignore[attr-defined]
        chunk = self._chunk_of_start.get(self.pos)  # type: ignore[attr-defined]
        if chunk is not None:
            for store, state in zip(self.states, (*lstm_states.pi, *lstm_states.vf), strict=True):
                store[chunk] = state.cpu().numpy()
        for store, mask in zip(self.masks, masks, strict=True):
            if store is not None:
                store[self.pos] = mask[0].cpu().numpy()  # type: ignore[attr-defined]
        super().add(*args, **kwargs)  # type: ignore[misc]

    def _groups(self) -> dict[int, np.ndarray]:
        """Chunk length -> the indices of the chunks of that length."""
        lengths = np.asarray(self.chunk_lengths)
        return {int(n): np.flatnonzero(lengths == n) for n in np.unique(lengths)}

    def _chunk(self, array: np.ndarray, steps: np.ndarray) -> th.Tensor:
        """(n_steps, n_envs, *shape) -> (length, n_chunks * n_envs, *shape) for the chunks whose
        steps are ``steps`` (length, n_chunks); chunk ``k * n_envs + e`` is env e's k-th."""
        picked = array[steps]  # (length, n_chunks, n_envs, *shape)
        return self.to_torch(picked.reshape(steps.shape[0], -1, *array.shape[2:]))  # type: ignore[attr-defined]

    def _chunk_observations(self, steps: np.ndarray) -> th.Tensor | dict[str, th.Tensor]:
        return self._chunk(self.observations, steps)

    def _chunk_group(self, length: int, chunks: np.ndarray) -> dict[str, Any]:
        """The chunks of one length, ready to be sliced into minibatches along dim 1 (states along dim 2)."""
        steps = (self._starts[chunks][None, :] + np.arange(length)[:, None]).astype(np.int64)  # (length, n_chunks)
        return {
            "observations": self._chunk_observations(steps),
            # float32 as SB3's buffers serve them (MultiBinary actions are stored as int8).
            "actions": self._chunk(self.actions.astype(np.float32, copy=False), steps),
            "old_values": self._chunk(self.values, steps),  # type: ignore[attr-defined]
            "old_log_prob": self._chunk(self.log_probs, steps),  # type: ignore[attr-defined]
            "advantages": self._chunk(self.advantages, steps),  # type: ignore[attr-defined]
            "returns": self._chunk(self.returns, steps),  # type: ignore[attr-defined]
            "episode_starts": self._chunk(self.episode_starts, steps),  # type: ignore[attr-defined]
            # (4, n_layers, n_chunks * n_envs, H): the state before each chunk
            "states": self.to_torch(  # type: ignore[attr-defined]
                np.stack([s[chunks].swapaxes(0, 1).reshape(self.n_layers, -1, self.hidden_size) for s in self.states])
            ),
            "masks": [None if m is None else self._chunk(m, steps) for m in self.masks],
            "action_masks": None if self.action_masks is None else self._chunk(self.action_masks, steps),
        }

    def get(self, batch_size: int | None = None) -> Generator[SequenceSamples, None, None]:  # type: ignore[override]
        """Minibatches of whole chunks of one length, in random order: ``round(batch_size /
        length)`` chunks each (at least one), or all chunks of a length when None."""
        assert self.full, "Rollout buffer must be full before sampling from it"  # type: ignore[attr-defined]
        if not self.generator_ready:  # chunk the rollout once, for all epochs
            self._chunked = [self._chunk_group(n, chunks) for n, chunks in self._groups().items()]
            self.generator_ready = True
        batches = []
        for group in self._chunked:
            length, n_chunks = group["episode_starts"].shape
            per_batch = n_chunks if batch_size is None else max(1, (batch_size + length // 2) // length)
            # One batch of everything needs no shuffle (and draws no random numbers).
            shuffle = th.randperm if per_batch < n_chunks else th.arange
            order = shuffle(n_chunks, device=self.device)  # type: ignore[attr-defined]
            batches += [(group, order[a : a + per_batch]) for a in range(0, n_chunks, per_batch)]
        if len(self._chunked) > 1 and batch_size is not None:  # mix the lengths
            batches = [batches[i] for i in th.randperm(len(batches)).tolist()]
        for group, idx in batches:
            yield self._sample(group, idx)

    def _sample(self, group: dict[str, Any], idx: th.Tensor) -> SequenceSamples:
        obs = group["observations"]
        if isinstance(obs, dict):
            obs = {key: value.index_select(1, idx) for key, value in obs.items()}
        else:
            obs = obs.index_select(1, idx)
        states = group["states"].index_select(2, idx)  # (4, n_layers, n_seq, H)
        action_masks = group["action_masks"]
        if action_masks is not None:
            action_masks = action_masks.index_select(1, idx).flatten(0, 1)  # (seq_len * n_seq, dims), as actions
        return SequenceSamples(
            observations=obs,
            actions=group["actions"].index_select(1, idx).flatten(0, 1),
            old_values=group["old_values"].index_select(1, idx).flatten(),
            old_log_prob=group["old_log_prob"].index_select(1, idx).flatten(),
            advantages=group["advantages"].index_select(1, idx).flatten(),
            returns=group["returns"].index_select(1, idx).flatten(),
            lstm_states=RNNStates((states[0], states[1]), (states[2], states[3])),
            episode_starts=group["episode_starts"].index_select(1, idx),
            masks=RNNMasks(*(None if m is None else m.index_select(1, idx) for m in group["masks"])),
            action_masks=action_masks,
        )


class SequenceRolloutBuffer(_SequenceStorage, RolloutBuffer):
    """Rollout buffer recording memory states and dropout masks, sampled as sequence chunks
    (arguments: SB3's ``RolloutBuffer``'s and :class:`_SequenceStorage`'s)."""

    def __init__(self, buffer_size: int, observation_space: spaces.Space, *args: Any, **kwargs: Any) -> None:
        if isinstance(observation_space, spaces.Dict):
            raise ValueError("observation_space: a Dict space needs SequenceDictRolloutBuffer")
        super().__init__(buffer_size, observation_space, *args, **kwargs)


class SequenceDictRolloutBuffer(_SequenceStorage, DictRolloutBuffer):
    """:class:`SequenceRolloutBuffer` for ``spaces.Dict`` observations (as sb3-contrib's
    ``RecurrentDictRolloutBuffer``): observations are served as a dict of ``(seq_len, n_seq,
    *shape)`` tensors."""

    observations: dict[str, np.ndarray]

    def _chunk_observations(self, steps: np.ndarray) -> dict[str, th.Tensor]:
        return {key: self._chunk(obs, steps) for key, obs in self.observations.items()}
