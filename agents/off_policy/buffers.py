"""A replay buffer of sequences for off-policy agents with memory (R2D2's stored state and burn-in).

Each environment's steps are kept in order, in a ring of ``buffer_size // n_envs`` steps per
environment, with the memory state before every step and the dropout masks of every step. A sample
is a batch of windows of ``seq_len`` positions; window ``j`` is built around a step drawn uniformly
from the buffer (its *first loss step*):

- positions ``0 .. burn_in - 1``: up to ``burn_in`` steps before it, in the same episode, which only
  refresh the memory state (no loss, no gradient). Where the episode began fewer steps before, the
  window is padded on the left and its first real step is an episode start (the memory resets there,
  so the padding never reaches it);
- positions ``burn_in .. seq_len - 1``: the loss steps, up to the end of the episode or the newest
  stored step, padded on the right;
- one more position after the last real step: the observation that followed it (the terminal one
  when the episode ended there), from which a truncated episode is bootstrapped with the memory state
  carried on. A window never crosses an episode's end, nor an environment.

The memory state of the window's first real step is the one stored when it was collected, and the
masks are the ones that step used, so with unchanged parameters the window's outputs are the
collected ones.

``state_stride=k`` keeps the memory states of one step in k only (a lean replay: the states are most of a
step's bytes), as R2D2 stores the state at the start of each stored sequence. A window's first loss step
is then drawn among the steps whose burn-in starts at a kept state or at the episode's first step (one
step in k, and the first ``burn_in + 1`` of each episode); with ``k <= seq_len - burn_in`` every step is
still a loss step of some window, and the windows keep their shape and their exactness.

Observations and rewards are stored as the environment gave them and normalised when sampled (SB3's replay
buffers do the same with VecNormalize).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.common.vec_env import VecNormalize

__all__ = ["SequenceReplayBuffer", "SequenceReplaySamples", "bytes_per_step"]


class SequenceReplaySamples(NamedTuple):
    """A batch of ``n`` windows, time-major; ``L = seq_len``.

    observations ``(L + 1, n, *obs_shape)`` (a dict of those for Dict observations); actions ``(L, n,
    action_dim)`` (float32, Box actions scaled to [-1, 1] as SB3 stores them); rewards, terminated
    ``(L, n)``; episode_starts ``(L + 1, n)``; loss_mask ``(L, n)``: 1 on the loss steps (real steps
    past the burn-in); ends ``(n,)``: the position of each window's bootstrap observation (its last real
    step + 1); states: per memory ``(h, c)``, each ``(n_layers, n, H)``, before position 0; masks: per
    memory the dropout masks ``(L + 1, n, W)`` or None; burn_in_steps ``(n,)``: the real steps of each
    window's burn-in; loss_states: per memory the ``(h, c)`` stored at each window's first loss step (what
    the burn-in recomputes: their difference is how far stored states drift from the current parameters');
    drift_rows ``(n,)``: the windows with a burn-in whose first loss step's state is kept.
    """

    observations: th.Tensor | TensorDict
    actions: th.Tensor
    rewards: th.Tensor
    terminated: th.Tensor
    episode_starts: th.Tensor
    loss_mask: th.Tensor
    ends: th.Tensor
    states: tuple[tuple[th.Tensor, th.Tensor], ...]
    masks: tuple[th.Tensor | None, ...]
    burn_in_steps: th.Tensor
    loss_states: tuple[tuple[th.Tensor, th.Tensor], ...]
    drift_rows: th.Tensor


def _obs_shapes(space: spaces.Space) -> dict[str, tuple[int, ...]]:
    shape = get_obs_shape(space)
    return dict(shape) if isinstance(shape, dict) else {"": shape}  # type: ignore[arg-type]


def bytes_per_step(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    hidden_size: int,
    n_layers: int = 1,
    n_memories: int = 1,
    mask_widths: tuple[int, ...] = (),
    state_stride: int = 1,
) -> float:
    """Bytes the buffer holds per stored step: observation and next observation (as the space's
    dtype), action (float32), reward, termination, episode start (float32 each), the episode's end
    (bool) and step (int32), ``(h, c)`` of every memory (float32) on one step in ``state_stride``, and the
    masks (float32).

    At ``n_memories=2``, 64 units, one layer, no masks, 3 float32 observations and one action: 1,069
    bytes, about 1.07 GB per 1M steps, 96% of it the stored states (their price: replay from any step);
    301 at ``state_stride=4``.
    """
    obs = sum(
        int(np.prod(shape)) * np.dtype(sub.dtype).itemsize
        for shape, sub in zip(_obs_shapes(observation_space).values(), _subspaces(observation_space), strict=True)
    )
    per_step = 2 * obs + 4 * get_action_dim(action_space) + 3 * 4 + 1 + 4
    states = 4 * 2 * n_memories * n_layers * hidden_size / state_stride
    return per_step + states + 4 * sum(mask_widths)


def _subspaces(space: spaces.Space) -> list[spaces.Space]:
    return list(space.spaces.values()) if isinstance(space, spaces.Dict) else [space]


class SequenceReplayBuffer(BaseBuffer):
    """Replay buffer of windows of episodes with stored memory states and dropout masks (see the module).

    :param buffer_size: steps kept in all (``buffer_size // n_envs`` per environment, as SB3's buffers).
    :param observation_space: as SB3's ``ReplayBuffer``'s.
    :param action_space: as SB3's ``ReplayBuffer``'s.
    :param device: as SB3's ``ReplayBuffer``'s.
    :param n_envs: as SB3's ``ReplayBuffer``'s.
    :param hidden_size: the memories' hidden size.
    :param seq_len: positions of a window, burn-in included.
    :param burn_in: leading positions that only refresh the memory state (R2D2's burn-in).
    :param n_layers: layers of each memory (states are ``(n_layers, n_envs, hidden_size)``).
    :param mask_widths: the dropout mask width of each memory (0: it records none); their number is the
        number of memories whose state is stored (DQN: 1; SAC: actor and critic, or 1 when shared).
    :param state_stride: keep the memory states of one step in this many (see the module), at most
        ``seq_len - burn_in``; 1: every step.
    """

    state_stride: int = 1  # what a buffer pickled before the option holds (every step's state)

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        hidden_size: int,
        seq_len: int,
        burn_in: int = 0,
        device: th.device | str = "auto",
        n_envs: int = 1,
        n_layers: int = 1,
        mask_widths: tuple[int, ...] = (0,),
        state_stride: int = 1,
    ) -> None:
        for name, value in (("buffer_size", buffer_size), ("seq_len", seq_len), ("n_envs", n_envs),
                            ("state_stride", state_stride)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or not 0 <= burn_in < seq_len:
            raise ValueError(
                f"burn_in={burn_in!r}: expected an integer in [0, seq_len={seq_len}), leaving at least one loss step"
            )
        k = int(state_stride)
        if k > seq_len - burn_in:
            raise ValueError(
                f"state_stride={state_stride}: expected at most seq_len - burn_in = {seq_len - burn_in}, so that "
                "every step is a loss step of some window"
            )
        per_env = buffer_size // n_envs // k * k  # a whole number of strides: kept states stay aligned in the ring
        if per_env < seq_len:
            raise ValueError(
                f"buffer_size={buffer_size}: holds {per_env} steps per environment ({n_envs} envs), fewer than a "
                f"window of seq_len={seq_len}; expected at least {seq_len * n_envs}"
            )
        super().__init__(per_env, observation_space, action_space, device, n_envs=n_envs)
        self.hidden_size = hidden_size
        self.state_stride = k
        self.seq_len = int(seq_len)
        self.burn_in = int(burn_in)
        self.n_layers = n_layers
        self.mask_widths = tuple(int(w) for w in mask_widths)
        self.dict_obs = isinstance(observation_space, spaces.Dict)
        c, e = self.buffer_size, n_envs
        dtypes = [sub.dtype for sub in _subspaces(observation_space)]
        self.observations = {
            k: np.zeros((c, e, *s), dtype=d)
            for (k, s), d in zip(_obs_shapes(observation_space).items(), dtypes, strict=True)
        }
        self.next_observations = {k: np.zeros_like(v) for k, v in self.observations.items()}
        self.actions = np.zeros((c, e, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros((c, e), dtype=np.float32)
        self.terminated = np.zeros((c, e), dtype=np.float32)
        self.episode_starts = np.zeros((c, e), dtype=np.float32)
        self.ends = np.zeros((c, e), dtype=bool)  # the episode ended at this step (terminated or truncated)
        self.episode_steps = np.zeros((c, e), dtype=np.int32)  # steps since the episode's first
        # h and c of every memory before each kept step (ring index a multiple of the stride):
        # (c // state_stride, e, 2 * n_memories, n_layers, H)
        self.states = np.zeros((c // k, e, 2 * len(self.mask_widths), n_layers, hidden_size), dtype=np.float32)
        self.masks = [np.zeros((c, e, w), dtype=np.float32) if w else None for w in self.mask_widths]
        self._steps_in_episode = np.zeros(e, dtype=np.int32)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored arrays."""
        arrays = [*self.observations.values(), *self.next_observations.values(), self.actions, self.rewards,
                  self.terminated, self.episode_starts, self.ends, self.episode_steps, self.states,
                  *(m for m in self.masks if m is not None)]  # fmt: skip
        return sum(a.nbytes for a in arrays)

    def add(
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        next_obs: np.ndarray | dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
        *,
        episode_start: np.ndarray,
        states: list[tuple[th.Tensor, th.Tensor]],
        masks: list[th.Tensor | None],
    ) -> None:
        """One step of every environment: ``obs``/``next_obs`` ``(n_envs, *shape)`` (``next_obs`` the
        terminal observation where an episode ended), ``action`` ``(n_envs, action_dim)``, ``reward``
        and ``done`` ``(n_envs,)``, ``infos`` (``TimeLimit.truncated`` marks a truncation), the
        ``episode_start`` flags of ``obs``, per memory the ``(h, c)`` before the step (each ``(n_layers,
        n_envs, H)``) and the masks the step used (``(1, n_envs, W)`` or None)."""
        p = self.pos
        for store, value in ((self.observations, obs), (self.next_observations, next_obs)):
            for key, array in store.items():
                array[p] = np.asarray(value[key] if self.dict_obs else value).reshape(array.shape[1:])
        self.actions[p] = np.asarray(action).reshape(self.n_envs, self.action_dim)
        self.rewards[p] = np.asarray(reward).reshape(-1)
        done = np.asarray(done, dtype=bool).reshape(-1)
        truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=bool)
        self.terminated[p] = done & ~truncated
        self.ends[p] = done
        start = np.asarray(episode_start, dtype=bool).reshape(-1)
        self.episode_starts[p] = start
        self._steps_in_episode[start] = 0
        self.episode_steps[p] = self._steps_in_episode
        self._steps_in_episode += 1
        if p % self.state_stride == 0:
            slot = p // self.state_stride
            for m, (h, c) in enumerate(states):
                self.states[slot, :, 2 * m] = h.detach().cpu().numpy().swapaxes(0, 1)
                self.states[slot, :, 2 * m + 1] = c.detach().cpu().numpy().swapaxes(0, 1)
        for store, mask in zip(self.masks, masks, strict=True):
            if store is not None:
                if mask is None:
                    raise ValueError("masks: this memory records dropout masks; its step returned None")
                store[p] = mask[0].detach().cpu().numpy()
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full, self.pos = True, 0

    # ------------------------------------------------------------------ sampling
    def _draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """First loss steps (index, env), their burn-in lengths and their ages (0: the newest step),
        drawn uniformly among the steps whose burn-in is stored (it reaches back ``burn_in`` steps or
        to the episode's first step) and starts at a kept state or at the episode's first step."""
        size, cap = self.size(), self.buffer_size
        index, env = np.empty(0, np.int64), np.empty(0, np.int64)
        for _ in range(1000):
            # numpy's global generator, which SB3's set_random_seed seeds (as SB3's replay buffers draw).
            i = np.random.randint(0, size, size=batch_size)  # noqa: NPY002
            e = np.random.randint(0, self.n_envs, size=batch_size)  # noqa: NPY002
            age = (self.pos - 1 - i) % cap
            in_episode = self.episode_steps[i, e]
            back = np.minimum(self.burn_in, in_episode)
            kept = (in_episode <= self.burn_in) | ((i - self.burn_in) % self.state_stride == 0)  # whole strides
            keep = (age + back <= size - 1) & kept
            index, env = np.concatenate([index, i[keep]]), np.concatenate([env, e[keep]])
            if len(index) >= batch_size:
                index, env = index[:batch_size], env[:batch_size]
                age = (self.pos - 1 - index) % cap
                return index, env, np.minimum(self.burn_in, self.episode_steps[index, env]), age
        raise ValueError(
            f"buffer_size={self.buffer_size * self.n_envs}: no stored step has its burn-in of {self.burn_in} steps "
            "stored; expected a buffer holding several episodes per environment"
        )

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> SequenceReplaySamples:  # type: ignore[override]
        """``batch_size`` windows (see the module); observations and rewards normalised by ``env``."""
        if self.size() == 0:
            raise ValueError("the replay buffer is empty: collect steps before sampling")
        index, env_idx, back, age = self._draw(batch_size)
        return self._windows(index, env_idx, back, age, env)

    def _windows(
        self, index: np.ndarray, env_idx: np.ndarray, back: np.ndarray, age: np.ndarray, env: VecNormalize | None
    ) -> SequenceReplaySamples:
        n, big_l, b, cap = len(index), self.seq_len, self.burn_in, self.buffer_size
        learn = big_l - b
        offsets = np.arange(learn)
        ahead = (index[:, None] + offsets) % cap  # (n, learn)
        stored = offsets[None, :] <= age[:, None]
        ended = self.ends[ahead, env_idx[:, None]] & stored
        first_end = np.where(ended.any(1), ended.argmax(1) + 1, learn)
        # An episode can also be cut without an end (learn() called again with reset_num_timesteps=True):
        # a window stops before the next episode start too.
        restart = (self.episode_starts[ahead, env_idx[:, None]] > 0) & stored & (offsets[None, :] >= 1)
        first_restart = np.where(restart.any(1), restart.argmax(1), learn)
        forward = np.minimum.reduce([first_end, first_restart, age + 1])  # loss steps of each window (<= learn)
        # Position p holds step index + p - b for -back <= p - b < forward; position b + forward the next obs.
        pos = np.arange(big_l + 1)
        rel = pos[None, :] - b  # (n, L + 1)
        real = (rel >= -back[:, None]) & (rel < forward[:, None])
        steps = (index[:, None] + rel) % cap
        rows = np.broadcast_to(env_idx[:, None], steps.shape)
        ends = b + forward  # (n,)
        last = (index + forward - 1) % cap  # the last real step of each window

        def gather(array: np.ndarray) -> np.ndarray:
            out = np.zeros((n, big_l + 1, *array.shape[2:]), dtype=array.dtype)
            out[real] = array[steps[real], rows[real]]
            return out

        obs = {}
        for key, array in self.observations.items():
            o = gather(array)
            o[np.arange(n), ends] = self.next_observations[key][last, env_idx]
            obs[key] = o
        if env is not None:
            flat = {k: v.reshape(n * (big_l + 1), *v.shape[2:]) for k, v in obs.items()}
            normed = self._normalize_obs(flat if self.dict_obs else flat[""], env)
            normed = normed if self.dict_obs else {"": normed}
            obs = {k: np.asarray(v, dtype=np.float32).reshape(obs[k].shape) for k, v in normed.items()}
        rewards = gather(self.rewards)[:, :big_l]
        if env is not None:
            rewards = self._normalize_reward(rewards.reshape(-1, 1), env).reshape(rewards.shape).astype(np.float32)
        masks = []
        for store in self.masks:
            if store is None:
                masks.append(None)
                continue
            m = gather(store)
            m[np.arange(n), ends] = store[last, env_idx]  # the bootstrap step acts with its episode's masks
            masks.append(self._tm(m))
        k = self.state_stride
        first = (index - back) % cap  # the first real step: its kept state starts the window
        states = self.states[first // k, env_idx]  # (n, 2 * n_memories, n_layers, H)
        # A window that starts at its episode's first step (left-padded, or exactly burn_in steps in) resets
        # there: zeros (a stride's slot may hold another episode's state).
        at_start = back == self.episode_steps[index, env_idx]
        states = np.where(at_start[:, None, None, None], 0.0, states).astype(np.float32)
        states = self.to_torch(states.transpose(1, 2, 0, 3))  # (2 * n_memories, n_layers, n, H)
        # The state kept at each first loss step (zeros where none is kept: see drift_rows).
        at_loss = np.where((index % k == 0)[:, None, None, None], self.states[index // k, env_idx], 0.0)
        at_loss = self.to_torch(at_loss.astype(np.float32).transpose(1, 2, 0, 3))
        drift_rows = (back > 0) & (index % k == 0)
        loss = np.zeros((n, big_l), dtype=np.float32)
        loss[:, b:] = offsets[None, :] < forward[:, None]
        observations = {k: self._tm(v) for k, v in obs.items()}
        return SequenceReplaySamples(
            observations=observations if self.dict_obs else observations[""],
            actions=self._tm(gather(self.actions)[:, :big_l]),
            rewards=self._tm(rewards),
            terminated=self._tm(gather(self.terminated)[:, :big_l]),
            episode_starts=self._tm(gather(self.episode_starts)),
            loss_mask=self._tm(loss),
            ends=self.to_torch(ends.astype(np.int64)),
            states=tuple((states[2 * m], states[2 * m + 1]) for m in range(len(self.mask_widths))),
            masks=tuple(masks),
            burn_in_steps=self.to_torch(back.astype(np.int64)),
            loss_states=tuple((at_loss[2 * m], at_loss[2 * m + 1]) for m in range(len(self.mask_widths))),
            drift_rows=self.to_torch(drift_rows),
        )

    def _tm(self, array: np.ndarray) -> th.Tensor:
        """(n, T, ...) -> time-major tensor (T, n, ...)."""
        return self.to_torch(np.ascontiguousarray(array.swapaxes(0, 1)))

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> SequenceReplaySamples:
        raise NotImplementedError("SequenceReplayBuffer samples windows: call sample(batch_size, env)")
