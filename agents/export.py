"""A trained recurrent policy as a step function for deployment, in ONNX or TorchScript.

The exported file computes, for a batch of ``B`` environments, one deterministic step of the actor
with its memory made explicit (SB3 issues #1125, #2099: the state must be an input and an output)::

    (obs, h, c, episode_start) -> (action, h_out, c_out)

The actor is the on-policy agents' (:class:`agents.CellLstmPolicy`: RecurrentPPO, RecurrentA2C and their
maskable forms, sb3-contrib's RecurrentPPO models) or the off-policy agents' acting memory
(:class:`agents.off_policy.RecurrentDQN`'s greedy Q-network, :class:`agents.off_policy.RecurrentSAC`'s
actor at its mean); the state is the memory ``model.predict`` carries.

============== ============================== ======= ==============================================
name           shape                          dtype   meaning
============== ============================== ======= ==============================================
obs            (B, *obs_shape)                float32 the raw observation (Dict spaces: one input
                                                      ``obs.<key>`` per key, in the space's order);
                                                      VecNormalize statistics are baked in
h, c           (n_lstm_layers, B, H)          float32 the actor's memory state, zeros at the start
episode_start  (B,)                           float32 1 on the first step of an episode (resets that
                                                      row's state), else 0
action         (B,) Discrete, (B, n)          int64   as ``model.predict(..., deterministic=True)``
               MultiDiscrete; (B, *shape)     float32 returns it (Box clipped to the bounds)
               Box / MultiBinary
h_out, c_out   (n_lstm_layers, B, H)          float32 the state to feed back at the next step
============== ============================== ======= ==============================================

``c`` is part of the signature for every memory, as in ``model.predict``'s state: memories that
carry h only (the GRU family, ``rnn``) return zeros as ``c_out``. ``B`` is free (a dynamic axis).
The step runs in eval mode: no dropout, zoneout at its expectation. :func:`describe` lists a
model's inputs and outputs with their shapes. :func:`export` writes a policy's step; the command
``python scripts/export.py RUN_DIR --format onnx`` (``rl-lstm-export``, :mod:`agents.training.export`)
writes a run's model beside it and prints them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import get_obs_shape
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from agents.off_policy.policies import RecurrentDQNPolicy, RecurrentOffPolicyPolicy
from agents.policies import STOCK_POLICIES, CellLstmPolicy

#: The policies an exported step can be made of: the on-policy and the off-policy agents'.
RecurrentPolicy = CellLstmPolicy | RecurrentOffPolicyPolicy

#: Export format -> the file suffix written when no ``--out`` is given.
FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}
#: The ONNX opset the graphs are written with (onnxruntime 1.16 and later run it).
ONNX_OPSET = 17
#: What onnxruntime or the TorchScript module may differ from the eager step by in the self-check.
CHECK_ATOL = 1e-4
#: The compiled recurrent kernel's switch (``rl_lstm.kernel``): traced graphs need the cells' Python path.


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the exported step: its name, shape (``"B"`` the batch) and dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype} ({', '.join(map(str, self.shape))})"


def _obs_spaces(space: spaces.Space) -> dict[str, spaces.Space]:
    """The observation inputs: ``{"obs": space}``, or ``{"obs.<key>": subspace}`` for a Dict space."""
    if isinstance(space, spaces.Dict):
        return {f"obs.{key}": sub for key, sub in space.spaces.items()}
    return {"obs": space}


class PolicyStep(nn.Module):
    """One deterministic actor step of a recurrent policy (:data:`RecurrentPolicy`), with the state explicit.

    ``forward(*obs, h, c, episode_start) -> (action, h_out, c_out)``; see the module docstring for
    the shapes. The policy is copied to the CPU in float32 and eval mode (no dropout masks act).

    :param policy: a trained policy (``model.policy``).
    :param vec_normalize: the VecNormalize the policy was trained behind: its observation statistics
        are applied inside the step (``clip((obs - mean) / sqrt(var + eps), -clip_obs, clip_obs)``),
        so the step takes raw observations. None: observations go in as given.
    """

    def __init__(self, policy: RecurrentPolicy, vec_normalize: VecNormalize | None = None) -> None:
        super().__init__()
        if not isinstance(policy, (CellLstmPolicy, RecurrentOffPolicyPolicy)):
            raise ValueError(
                f"policy: expected a recurrent policy of agents (CellLstmPolicy and its Cnn/MultiInput forms, "
                f"RecurrentDQNPolicy, RecurrentSACPolicy), got {type(policy).__name__}"
            )
        action_space = policy.action_space
        if not isinstance(action_space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
            raise ValueError(
                f"action space {action_space}: expected Box, Discrete, MultiDiscrete or MultiBinary actions"
            )
        # A fresh copy (a trained policy's distribution holds tensors of the last graph: no deepcopy).
        self.policy = type(policy)(**policy._get_constructor_parameters())
        self.policy.load_state_dict(policy.state_dict())
        self.policy.to("cpu", th.float32)
        self.policy.set_training_mode(False)
        self.policy.requires_grad_(False)
        self.off_policy = isinstance(self.policy, RecurrentOffPolicyPolicy)
        if self.off_policy:
            memories = [net.memory for net in self.policy.stored_memories()]
            memory = self.policy.acting_memory().memory
        else:
            memories, memory = list(self.policy.memories()), self.policy.lstm_actor
        for m in memories:
            m.masks_in_eval = False
        self.n_layers, self.hidden_size = memory.num_layers, memory.hidden_size
        self.carries_c = all("c" in layer.state_names for layer in memory.layers)
        self.obs_inputs = _obs_spaces(policy.observation_space)
        self.keys = list(policy.observation_space.spaces) if isinstance(policy.observation_space, spaces.Dict) else None
        self.action_space = action_space
        self._add_normalization(vec_normalize)
        if isinstance(action_space, spaces.Box):
            self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))

    def _add_normalization(self, vec_normalize: VecNormalize | None) -> None:
        """Buffers ``mean.<i>`` and ``std.<i>`` per normalised observation input (None where not normalised)."""
        self.normalized: list[bool] = [False] * len(self.obs_inputs)
        if vec_normalize is None or not vec_normalize.norm_obs:
            return
        self.clip_obs = float(vec_normalize.clip_obs)
        rms = vec_normalize.obs_rms
        for i, name in enumerate(self.obs_inputs):
            if self.keys is None:
                stats = rms
            else:
                key = self.keys[i]
                if key not in (vec_normalize.norm_obs_keys or []):
                    continue
                stats = rms[key]
            std = np.sqrt(stats.var + vec_normalize.epsilon)
            if tuple(np.shape(stats.mean)) != tuple(get_obs_shape(self.obs_inputs[name])):
                raise ValueError(
                    f"vec_normalize: statistics of shape {np.shape(stats.mean)} for input {name!r} of shape "
                    f"{get_obs_shape(self.obs_inputs[name])}: not the statistics of this model's environment"
                )
            self.register_buffer(f"mean_{i}", th.as_tensor(stats.mean, dtype=th.float32))
            self.register_buffer(f"std_{i}", th.as_tensor(std, dtype=th.float32))
            self.normalized[i] = True

    def forward(self, *inputs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        n_obs = len(self.obs_inputs)
        obs_parts, (h, c, episode_start) = list(inputs[:n_obs]), inputs[n_obs:]
        for i, normalized in enumerate(self.normalized):
            if normalized:
                scaled = (obs_parts[i] - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}")
                obs_parts[i] = th.clamp(scaled, -self.clip_obs, self.clip_obs)
        obs = obs_parts[0] if self.keys is None else dict(zip(self.keys, obs_parts, strict=True))
        # Zero the state of the rows that start an episode, by selection (a NaN must not cross the reset).
        starting = (episode_start != 0).view(1, -1, 1)
        zero = h.new_zeros(())
        h, c = th.where(starting, zero, h), th.where(starting, zero, c)
        action, h_out, c_out = self._act_off_policy(obs, h, c) if self.off_policy else self._act(obs, h, c)
        if not self.carries_c:
            c_out = th.zeros_like(c)  # keeps c an input of the graph, as in model.predict's state
        return action, h_out, c_out

    def _act(self, obs: th.Tensor | dict[str, th.Tensor], h: th.Tensor, c: th.Tensor) -> tuple[th.Tensor, ...]:
        """An on-policy actor's step (:class:`agents.CellLstmPolicy`), the state already reset."""
        policy = self.policy
        # BasePolicy's extract_features: the actor's extractor alone, with SB3's preprocessing.
        features = super(ActorCriticPolicy, policy).extract_features(obs, policy.pi_features_extractor)
        out, (h_out, c_out) = policy.lstm_actor(features.unsqueeze(0), (h, c))  # (1, B, H)
        latent_pi = policy.mlp_extractor.forward_actor(out[0])
        action = policy._get_action_dist_from_latent(latent_pi).get_actions(deterministic=True)
        if isinstance(self.action_space, spaces.Box):
            clipped = th.maximum(th.minimum(action, self.high), self.low)
            action = self._unscale(action) if policy.squash_output else clipped
        return action, h_out, c_out

    def _act_off_policy(
        self, obs: th.Tensor | dict[str, th.Tensor], h: th.Tensor, c: th.Tensor
    ) -> tuple[th.Tensor, ...]:
        """An off-policy actor's step (DQN's greedy action, SAC's mean action), the state already reset."""
        action, (h_out, c_out) = self.policy.act(obs, (h, c), None, deterministic=True)
        if isinstance(self.action_space, spaces.Box):  # the actor acts in [-1, 1]; predict unscales
            action = self._unscale(action)
        return action, h_out, c_out

    def _unscale(self, action: th.Tensor) -> th.Tensor:
        """SB3's ``unscale_action`` in torch: [-1, 1] to the Box's bounds."""
        return self.low + 0.5 * (action + 1.0) * (self.high - self.low)

    def what(self) -> str:
        """The policy's parts, for messages."""
        policy = self.policy
        if self.off_policy:
            extractor = policy.acting_memory().features_extractor
            head = "greedy Q-values" if isinstance(policy, RecurrentDQNPolicy) else "SAC actor"
        else:
            extractor, head = policy.pi_features_extractor, type(policy.action_dist).__name__
        return (
            f"features extractor {type(extractor).__name__}, memory of {self.n_layers} {policy.cell_name!r} cells, "
            f"{head}"
        )

    # ------------------------------------------------------------------ signature
    def example_inputs(self, batch: int = 2, seed: int = 0) -> tuple[th.Tensor, ...]:
        """Random inputs of the step's shapes: observations drawn from the spaces, a random state,
        and an episode start in the last row."""
        obs = []
        for i, sub in enumerate(self.obs_inputs.values()):
            sub.seed(seed + i)
            obs.append(th.as_tensor(np.stack([sub.sample() for _ in range(batch)]), dtype=th.float32))
        gen = th.Generator().manual_seed(seed)
        state = th.randn(2, self.n_layers, batch, self.hidden_size, generator=gen)
        starts = th.zeros(batch)
        starts[-1] = 1.0
        return (*obs, state[0], state[1] if self.carries_c else th.zeros_like(state[1]), starts)

    def input_names(self) -> list[str]:
        return [*self.obs_inputs, "h", "c", "episode_start"]

    def output_names(self) -> list[str]:
        return ["action", "h_out", "c_out"]

    def describe(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The inputs and outputs, with their shapes (``"B"``: the batch) and dtypes."""
        state = ("n_layers=" + str(self.n_layers), "B", "H=" + str(self.hidden_size))
        inputs = [TensorSpec(name, ("B", *get_obs_shape(sub)), "float32") for name, sub in self.obs_inputs.items()]
        inputs += [TensorSpec("h", state, "float32"), TensorSpec("c", state, "float32")]
        inputs.append(TensorSpec("episode_start", ("B",), "float32"))
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            action = TensorSpec("action", ("B",), "int64")
        elif isinstance(space, spaces.MultiDiscrete):
            action = TensorSpec("action", ("B", *space.shape), "int64")
        else:
            action = TensorSpec("action", ("B", *space.shape), "float32")
        return inputs, [action, TensorSpec("h_out", state, "float32"), TensorSpec("c_out", state, "float32")]


def describe(step: PolicyStep) -> str:
    """The inputs and outputs of an exported step, one per line."""
    inputs, outputs = step.describe()
    return "\n".join(["inputs:", *(f"  {spec}" for spec in inputs), "outputs:", *(f"  {spec}" for spec in outputs)])


# ---------------------------------------------------------------------- loading
def policy_from_zip(model: str | Path) -> RecurrentPolicy:
    """The policy saved in a model ``.zip`` by any of our recurrent algorithms (on- and off-policy), or by
    sb3-contrib's RecurrentPPO (whose ``nn.LSTM`` becomes a stack of ``lstm`` cells computing the same thing)."""
    model = Path(model)
    try:
        data, params, _ = load_from_zip_file(model, device="cpu")
    except Exception as e:  # a file that is not a saved SB3 model
        raise ValueError(f"{str(model)!r}: not a saved SB3 model ({type(e).__name__}: {e})") from None
    if not data or "policy_class" not in data or not params or "policy" not in params:
        raise ValueError(f"{str(model)!r}: holds no policy (expected a model saved by model.save)")
    policy_class = STOCK_POLICIES.get(data["policy_class"], data["policy_class"])
    if not (isinstance(policy_class, type) and issubclass(policy_class, (CellLstmPolicy, RecurrentOffPolicyPolicy))):
        raise ValueError(
            f"{str(model)!r}: holds a {getattr(policy_class, '__name__', policy_class)}; the export takes the "
            "recurrent policies (CellLstmPolicy, CnnCellLstmPolicy, MultiInputCellLstmPolicy, sb3-contrib's "
            "RecurrentPPO policies, RecurrentDQNPolicy, RecurrentSACPolicy and their Cnn/MultiInput forms)"
        )
    policy = policy_class(
        data["observation_space"], data["action_space"], lambda _: 0.0, **data.get("policy_kwargs", {})
    )
    policy.load_state_dict(params["policy"])
    return policy


# ---------------------------------------------------------------------- export
def _dynamic_axes(step: PolicyStep) -> dict[str, dict[int, str]]:
    axes = {name: {0: "B"} for name in step.obs_inputs}
    axes.update(h={1: "B"}, c={1: "B"}, episode_start={0: "B"}, action={0: "B"}, h_out={1: "B"}, c_out={1: "B"})
    return axes


def _run_exported(fmt: str, out: Path, step: PolicyStep, inputs: Sequence[th.Tensor]) -> list[np.ndarray] | None:
    """Run the written file on ``inputs`` (None for ONNX when onnxruntime is not installed)."""
    if fmt == "torchscript":
        loaded = th.jit.load(str(out))
        with th.no_grad():
            return [t.numpy() for t in loaded(*inputs)]
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in zip(step.input_names(), inputs, strict=True)}
    return session.run(None, feed)


def export(
    policy: RecurrentPolicy | PolicyStep,
    path: str | Path,
    fmt: str = "onnx",
    vec_normalize: VecNormalize | None = None,
) -> Path:
    """Write the policy's deterministic step (:class:`PolicyStep`) to ``path`` as ONNX or TorchScript,
    then run the file once against the eager step on a batch of 3 with an episode start (raises a
    RuntimeError if they differ; for ONNX only where onnxruntime is installed). Returns ``path``."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (the exporter writes through it)
        except ImportError:
            raise ValueError("format 'onnx' needs the onnx package: pip install 'rl-lstm[export]'") from None
    step = policy if isinstance(policy, PolicyStep) else PolicyStep(policy, vec_normalize)
    step.eval()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = step.example_inputs(batch=2)
    # Tracing and the ONNX exporter record the cells' Python path by themselves (rl_lstm.kernel.use).
    with th.no_grad(), warnings.catch_warnings():
        # Shape checks on the way are Python comparisons that tracing records as constants: expected.
        warnings.simplefilter("ignore", th.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace, .load, the TorchScript exporter
        # nn.LSTM / nn.GRU: the exporter warns about batch sizes unless h0/c0 are inputs, which they are.
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size other than 1")
        try:
            if fmt == "torchscript":
                traced = th.jit.trace(step, example, check_trace=False)
                traced.save(str(out))
            else:
                buffer = io.BytesIO()
                th.onnx.export(
                    step, example, buffer, dynamo=False, opset_version=ONNX_OPSET,
                    input_names=step.input_names(), output_names=step.output_names(),
                    dynamic_axes=_dynamic_axes(step),
                )  # fmt: skip
                out.write_bytes(buffer.getvalue())
        except Exception as e:
            raise ValueError(f"cannot export this policy to {fmt} ({step.what()}): {type(e).__name__}: {e}") from e
        check = step.example_inputs(batch=3, seed=1)
        expected = [t.numpy() for t in step(*check)]
        got = _run_exported(fmt, out, step, check)
    if got is not None:
        for name, a, b in zip(step.output_names(), expected, got, strict=True):
            if a.shape != b.shape or not np.allclose(a, b, atol=CHECK_ATOL):
                raise RuntimeError(
                    f"the exported {fmt} step differs from the policy on output {name!r} ({step.what()}): "
                    "some part of the policy does not trace faithfully"
                )
    return out
