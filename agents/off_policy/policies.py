"""Policies of the off-policy agents with memory: a Q-network with a memory (``RecurrentDQN``) and an
actor and twin critic each with a memory of their own, or one shared (``RecurrentSAC``). Every memory
is a :class:`agents.memory.MemoryStack` of registry cells, built from the on-policy agents' policy
keywords (``cell``, ``dropout``, ``ln_preact``, ``learnable``, ``lstm_hidden_size``, ``n_lstm_layers``,
``lstm_kwargs``)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from agents.memory import MemoryStack
from agents.memory_init import init_memories_
from agents.policy_core import check_replayable, make_optimizer, masks_in_eval, memory_settings

Hidden = tuple[th.Tensor, th.Tensor]

# SB3 SAC's bounds on the actor's log standard deviation.
LOG_STD_MIN, LOG_STD_MAX = -20, 2


class MemoryNet(nn.Module):
    """Features extractor, then a memory: ``(T, n, *obs)`` observations -> ``(T, n, H)`` latents; in
    :meth:`forward`, ``burn_in`` leading positions run without gradient (R2D2's burn-in)."""

    def __init__(self, features_extractor: BaseFeaturesExtractor, memory: MemoryStack) -> None:
        super().__init__()
        self.features_extractor = features_extractor
        self.memory = memory
        self.burned_state: Hidden | None = None  # the state after the last forward's burn-in

    def features(self, obs: PyTorchObs, policy: BasePolicy) -> th.Tensor:
        return policy.extract_features(obs, self.features_extractor)

    def forward(
        self,
        obs: PyTorchObs,
        state: Hidden,
        episode_starts: th.Tensor,
        masks: th.Tensor | None,
        policy: BasePolicy,
        burn_in: int = 0,
    ) -> th.Tensor:
        """obs ``(T, n, *shape)`` (a dict of those), state each ``(n_layers, n, H)``, episode_starts
        ``(T, n)``, masks ``(T, n, W)`` or None -> latents ``(T, n, H)``."""
        t, n = episode_starts.shape
        flat = {k: v.flatten(0, 1) for k, v in obs.items()} if isinstance(obs, dict) else obs.flatten(0, 1)
        x = self.features(flat, policy).reshape(t, n, -1)
        if burn_in == 0:
            return self.memory(x, state, episode_starts, masks, need_state=False)[0]
        with th.no_grad():
            first, state = self.memory(x[:burn_in], state, episode_starts[:burn_in], _part(masks, 0, burn_in))
        self.burned_state = state
        rest, _ = self.memory(x[burn_in:], state, episode_starts[burn_in:], _part(masks, burn_in, t), need_state=False)
        return th.cat([first, rest])

    def step(
        self, obs: PyTorchObs, state: Hidden, episode_starts: th.Tensor | None, policy: BasePolicy
    ) -> tuple[th.Tensor, Hidden]:
        """One step of ``n`` environments: obs ``(n, *shape)``, episode_starts ``(n,)`` (None: no row starts)
        -> ``(n, H)``, state."""
        starts = None if episode_starts is None else episode_starts[None]
        out, state = self.memory(self.features(obs, policy)[None], state, starts)
        return out[0], state


def _part(masks: th.Tensor | None, a: int, b: int) -> th.Tensor | None:
    return None if masks is None else masks[a:b]


class RecurrentOffPolicyPolicy(BasePolicy):
    """What both policies share: building memories from the registry, the masks, and ``predict`` with a
    memory state (as sb3-contrib's recurrent policies: ``state`` is the acting memory's ``(h, c)``, each
    ``(n_layers, n_envs, H)``; ``episode_start`` resets rows)."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        cell: str = "lstm",
        dropout: float | None = None,
        ln_preact: bool = True,
        learnable: bool = True,
        lstm_hidden_size: int = 64,
        n_lstm_layers: int = 1,
        lstm_kwargs: dict[str, Any] | None = None,
        memory_init: str | float | None = None,
        memory_horizon: int | None = None,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        squash_output: bool = False,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor_class, features_extractor_kwargs,
            optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs, squash_output=squash_output,
            normalize_images=normalize_images,
        )  # fmt: skip
        self.cell_name = cell
        self.cell_kwargs, self._memory_kwargs = memory_settings(
            cell, lstm_hidden_size, dropout, ln_preact, learnable, n_lstm_layers, lstm_kwargs, memory_init,
            memory_horizon,
        )  # fmt: skip
        self.memory_init, self.memory_horizon = memory_init, memory_horizon
        self.lstm_kwargs = dict(lstm_kwargs or {})
        self.lstm_hidden_size = lstm_hidden_size
        self.n_lstm_layers = n_lstm_layers
        self.net_arch = [64] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.lr_schedule = lr_schedule

    def _constructor_kwargs(self) -> dict[str, Any]:
        return dict(
            net_arch=self.net_arch, activation_fn=self.activation_fn, cell=self.cell_name,
            dropout=self.cell_kwargs["dropout"], ln_preact=self.cell_kwargs["ln_preact"],
            learnable=self.cell_kwargs["learnable"], lstm_hidden_size=self.lstm_hidden_size,
            n_lstm_layers=self.n_lstm_layers, lstm_kwargs=self.lstm_kwargs, memory_init=self.memory_init,
            memory_horizon=self.memory_horizon, features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs, normalize_images=self.normalize_images,
            optimizer_class=self.optimizer_class, optimizer_kwargs=self.optimizer_kwargs,
        )  # fmt: skip

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self._constructor_kwargs())
        # As SB3's DQNPolicy and ActorCriticPolicy: enough to rebuild the policy alone (BasePolicy.load).
        data["lr_schedule"] = self._dummy_schedule
        return data

    def make_memory_net(self) -> MemoryNet:
        extractor = self.make_features_extractor()
        memory = MemoryStack(self.cell_name, extractor.features_dim, self.lstm_hidden_size, **self._memory_kwargs)
        init_memories_([memory], self.memory_init, self.memory_horizon)
        check_replayable(memory, self.cell_name)
        return MemoryNet(extractor, memory)

    def make_optimizer(self, params: Iterator[nn.Parameter]) -> th.optim.Optimizer:
        return make_optimizer(self.optimizer_class, self.optimizer_kwargs, params, self.lr_schedule)

    # ------------------------------------------------------------------ memories
    def acting_memory(self) -> MemoryNet:
        """The memory whose state ``predict`` carries."""
        raise NotImplementedError

    def stored_memories(self) -> list[MemoryNet]:
        """The memories whose states and masks collection records, in the replay buffer's order."""
        raise NotImplementedError

    @contextmanager
    def dropout_masks_on(self) -> Iterator[None]:
        """Within this block the stored memories act with their dropout masks in eval mode (collection)."""
        with masks_in_eval(m.memory for m in self.stored_memories()):
            yield

    def zero_states(self, n_envs: int) -> list[Hidden]:
        zeros = th.zeros(self.n_lstm_layers, n_envs, self.lstm_hidden_size, device=self.device)
        return [(zeros, zeros) for _ in self.stored_memories()]

    def act(
        self, obs: PyTorchObs, state: Hidden, episode_starts: th.Tensor | None, deterministic: bool
    ) -> tuple[th.Tensor, Hidden]:
        """Actions for one step of ``n`` environments, from the acting memory (as the buffer stores
        them: Box actions in [-1, 1]), and its new state; ``episode_starts`` None: no row starts."""
        latent, state = self.acting_memory().step(obs, state, episode_starts, self)
        return self.action_from_latent(latent, deterministic), state

    def action_from_latent(self, latent: th.Tensor, deterministic: bool) -> th.Tensor:
        """The action for the acting memory's latents ``(n, H)``."""
        raise NotImplementedError

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """sb3-contrib's recurrent ``predict``: actions and the acting memory's next ``(h, c)``."""
        self.set_training_mode(False)
        obs, vectorized = self.obs_to_tensor(observation)
        n_envs = (next(iter(obs.values())) if isinstance(obs, dict) else obs).shape[0]
        if state is None:
            state = tuple(s.cpu().numpy() for s in self.zero_states(n_envs)[0])
        if episode_start is None:
            episode_start = np.zeros(n_envs, dtype=bool)
        with th.no_grad():
            hidden = (th.as_tensor(state[0], device=self.device), th.as_tensor(state[1], device=self.device))
            starts = th.as_tensor(np.asarray(episode_start), dtype=th.float32, device=self.device).reshape(-1)
            actions, hidden = self.act(obs, hidden, starts, deterministic)
        actions = actions.cpu().numpy().reshape((-1, *self.action_space.shape))
        if isinstance(self.action_space, spaces.Box):
            actions = self.unscale_action(actions)
        new_state = (hidden[0].cpu().numpy(), hidden[1].cpu().numpy())
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, new_state

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        raise NotImplementedError("a policy with memory acts through predict(observation, state, episode_start)")


class QNetwork(nn.Module):
    """Memory then an MLP to one Q-value per action."""

    def __init__(
        self, net: MemoryNet, hidden_size: int, n_actions: int, net_arch: list[int], activation_fn: type[nn.Module]
    ):
        super().__init__()
        self.net = net
        self.head = nn.Sequential(*create_mlp(hidden_size, n_actions, net_arch, activation_fn))


class RecurrentDQNPolicy(RecurrentOffPolicyPolicy):
    """Q-network with a memory for :class:`agents.off_policy.RecurrentDQN`, and its target copy.

    Takes the on-policy agents' memory keywords (``cell``, ``dropout``, ``ln_preact``, ``learnable``,
    ``lstm_hidden_size``, ``n_lstm_layers``, ``lstm_kwargs``), ``net_arch`` (the layers between the
    memory and the Q-values, default ``[64]``), ``activation_fn``, ``features_extractor_class/kwargs``,
    ``normalize_images``, ``optimizer_class/kwargs``.
    """

    action_space: spaces.Discrete

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any
    ):
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        n = int(action_space.n)
        self.q_net = QNetwork(self.make_memory_net(), self.lstm_hidden_size, n, self.net_arch, self.activation_fn)
        self.q_net_target = copy.deepcopy(self.q_net)
        self.q_net_target.requires_grad_(False)
        self.optimizer = self.make_optimizer(self.q_net.parameters())

    def acting_memory(self) -> MemoryNet:
        return self.q_net.net

    def stored_memories(self) -> list[MemoryNet]:
        return [self.q_net.net]

    def set_training_mode(self, mode: bool) -> None:
        self.q_net.train(mode)
        self.training = mode

    def action_from_latent(self, latent: th.Tensor, deterministic: bool) -> th.Tensor:
        return self.q_net.head(latent).argmax(-1)  # greedy; exploration is the algorithm's

    def q_values(self, network: QNetwork, data: Any, burn_in: int) -> th.Tensor:
        """Q-values ``(L + 1, n, n_actions)`` of every position of a batch of windows."""
        net = network.net
        latent = net(data.observations, data.states[0], data.episode_starts, data.masks[0], self, burn_in)
        return network.head(latent)


class _SACActor(nn.Module):
    def __init__(self, net: MemoryNet, hidden_size: int, action_space: spaces.Space, net_arch, activation_fn):
        super().__init__()
        self.net = net
        self.latent = nn.Sequential(*create_mlp(hidden_size, -1, net_arch, activation_fn))
        last = net_arch[-1] if net_arch else hidden_size
        if isinstance(action_space, spaces.Box):
            dim = get_action_dim(action_space)
            self.mu, self.log_std = nn.Linear(last, dim), nn.Linear(last, dim)
            self.distribution = SquashedDiagGaussianDistribution(dim)
        else:
            self.logits = nn.Linear(last, int(action_space.n))


class _SACCritic(nn.Module):
    """Two Q heads over one memory's latent: ``Q(h, a) -> 1`` for Box actions, ``Q(h) -> n`` for discrete."""

    def __init__(self, net: MemoryNet, hidden_size: int, action_space: spaces.Space, net_arch, activation_fn):
        super().__init__()
        self.net = net
        discrete = isinstance(action_space, spaces.Discrete)
        inputs = hidden_size + (0 if discrete else get_action_dim(action_space))
        outputs = int(action_space.n) if discrete else 1
        self.q1 = nn.Sequential(*create_mlp(inputs, outputs, net_arch, activation_fn))
        self.q2 = nn.Sequential(*create_mlp(inputs, outputs, net_arch, activation_fn))


class RecurrentSACPolicy(RecurrentOffPolicyPolicy):
    """Actor and twin critic, each with a memory, for :class:`agents.off_policy.RecurrentSAC`; Box or
    Discrete actions.

    Ni et al. 2022 (*Recurrent model-free RL can be a strong baseline for many POMDPs*) found separate
    memories for actor and critic best: the default. ``share_memory=True`` gives both one memory,
    trained by the critic's loss only (the actor reads its latent detached). The critic's two Q heads
    share its memory; its target is a copy of it (memory included). ``net_arch``: the layers after the
    memory in the actor and in each Q head (default ``[64]``); the other keywords as
    :class:`RecurrentDQNPolicy`'s.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        share_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, lr_schedule, squash_output=isinstance(action_space, spaces.Box), **kwargs
        )
        self.share_memory = bool(share_memory)
        self.discrete = isinstance(action_space, spaces.Discrete)
        args = (self.lstm_hidden_size, action_space, self.net_arch, self.activation_fn)
        actor_net = self.make_memory_net()
        self.actor = _SACActor(actor_net, *args)
        self.critic = _SACCritic(actor_net if self.share_memory else self.make_memory_net(), *args)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_target.requires_grad_(False)
        actor_params = [p for n, p in self.actor.named_parameters() if not (self.share_memory and n.startswith("net."))]
        self.actor.optimizer = self.make_optimizer(iter(actor_params))
        self.critic.optimizer = self.make_optimizer(self.critic.parameters())

    def _constructor_kwargs(self) -> dict[str, Any]:
        return {**super()._constructor_kwargs(), "share_memory": self.share_memory}

    def acting_memory(self) -> MemoryNet:
        return self.actor.net

    def stored_memories(self) -> list[MemoryNet]:
        return [self.actor.net] if self.share_memory else [self.actor.net, self.critic.net]

    def set_training_mode(self, mode: bool) -> None:
        self.actor.train(mode)
        self.critic.train(mode)
        self.training = mode

    # ------------------------------------------------------------------ actor
    def distribution(self, latent: th.Tensor) -> tuple[th.Tensor, th.Tensor] | th.Tensor:
        """The actor's output from memory latents ``(..., H)``: (mean, log_std) for Box actions, else logits."""
        x = self.actor.latent(latent)
        if self.discrete:
            return self.actor.logits(x)
        return self.actor.mu(x), self.actor.log_std(x).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, latent: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
        """Box: actions in [-1, 1] ``(..., A)`` and their log-probabilities ``(...)``; Discrete: actions
        (indices) ``(...)`` and the log-probabilities of every action ``(..., n)``."""
        params = self.distribution(latent)
        if self.discrete:
            log_p = th.log_softmax(params, -1)
            if deterministic:
                return log_p.argmax(-1), log_p
            return th.distributions.Categorical(logits=log_p).sample(), log_p
        # SB3's distributions sum log-probabilities over dim 1: give them (rows, A).
        lead = latent.shape[:-1]
        mean, log_std = (x.reshape(-1, x.shape[-1]) for x in params)
        dist = self.actor.distribution.proba_distribution(mean, log_std)
        actions = dist.mode() if deterministic else dist.sample()
        log_p = dist.log_prob(actions, dist.gaussian_actions)
        return actions.reshape(*lead, -1), log_p.reshape(lead)

    def log_prob(self, latent: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Log-probabilities ``(...)`` of given actions (Box: ``(..., A)`` in [-1, 1]; Discrete: ``(..., 1)``
        indices)."""
        params = self.distribution(latent)
        if self.discrete:
            return th.log_softmax(params, -1).gather(-1, actions.long()).squeeze(-1)
        lead = latent.shape[:-1]
        mean, log_std = (x.reshape(-1, x.shape[-1]) for x in params)
        dist = self.actor.distribution.proba_distribution(mean, log_std)
        return dist.log_prob(actions.reshape(mean.shape)).reshape(lead)

    def action_from_latent(self, latent: th.Tensor, deterministic: bool) -> th.Tensor:
        return self.sample(latent, deterministic)[0]

    # ------------------------------------------------------------------ critic
    def q(self, critic: _SACCritic, latent: th.Tensor, actions: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """Both Q heads: Box ``(..., 1)`` at ``actions``; Discrete ``(..., n)``, every action."""
        x = latent if self.discrete else th.cat([latent, actions], -1)
        return critic.q1(x), critic.q2(x)

    def latents(self, data: Any, burn_in: int) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Actor, critic and target-critic latents ``(L + 1, n, H)`` of a batch of windows, each memory from
        its stored state and with its stored masks (the target critic with the critic's)."""
        args = (data.episode_starts,)
        actor = self.actor.net(data.observations, data.states[0], *args, data.masks[0], self, burn_in)
        m = 0 if self.share_memory else 1
        critic = self.critic.net(data.observations, data.states[m], *args, data.masks[m], self, burn_in)
        with th.no_grad():
            target = self.critic_target.net(data.observations, data.states[m], *args, data.masks[m], self, burn_in)
        return actor, critic, target


class CnnRecurrentDQNPolicy(RecurrentDQNPolicy):
    """:class:`RecurrentDQNPolicy` on images (SB3's ``NatureCNN``)."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputRecurrentDQNPolicy(RecurrentDQNPolicy):
    """:class:`RecurrentDQNPolicy` on ``spaces.Dict`` observations (SB3's ``CombinedExtractor``)."""

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any
    ):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class CnnRecurrentSACPolicy(RecurrentSACPolicy):
    """:class:`RecurrentSACPolicy` on images (SB3's ``NatureCNN``)."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputRecurrentSACPolicy(RecurrentSACPolicy):
    """:class:`RecurrentSACPolicy` on ``spaces.Dict`` observations (SB3's ``CombinedExtractor``)."""

    def __init__(
        self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs: Any
    ):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
