"""Export of trained recurrent policies: the ONNX graph (run by onnxruntime) and the TorchScript module
reproduce ``model.predict``'s actions and states over whole episodes, for every registry cell, image
and Dict observations, stacked layers, baked-in observation normalisation, and the off-policy agents'
actors (DQN's greedy Q-network, SAC's mean action, Box and Discrete); bad input is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents import RecurrentA2C, RecurrentPPO
from agents.export import FORMATS, PolicyStep, describe, export
from agents.off_policy import RecurrentDQN, RecurrentSAC
from agents.training.export import load_policy, main
from rl_lstm import CELLS
from tests.cue_envs import CueEnv

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

SMALL = dict(lstm_hidden_size=8, net_arch=dict(pi=[8], vf=[8]))
# predict runs the LSTM cells on the compiled kernel, whose float32 exp is a polynomial, and the exported
# graph runs their Python path: states agree to float32 rounding accumulated over an episode.
ATOL = 5e-5


def _model(env, policy="MlpLstmPolicy", algo=RecurrentPPO, **policy_kwargs):
    return algo(policy, env, n_steps=8, seed=0, device="cpu", policy_kwargs=dict(SMALL, **policy_kwargs))


def _cartpole(n_envs: int, seed: int) -> VecEnv:
    """CartPole cut at 9 steps: every run holds episode starts, at different steps in different rows."""
    return make_vec_env(lambda: gym.make("CartPole-v1", max_episode_steps=9), n_envs=n_envs, seed=seed)


class _Runner:
    """The exported file as a step function of numpy arrays."""

    def __init__(self, fmt: str, path: Path, step: PolicyStep) -> None:
        self.names = step.input_names()
        if fmt == "onnx":
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            assert [i.name for i in session.get_inputs()] == self.names, "every input stays in the graph"
            self.run = lambda feed: session.run(None, feed)
        else:
            module = th.jit.load(str(path))
            self.run = lambda feed: [t.numpy() for t in module(*(th.as_tensor(v) for v in feed.values()))]

    def __call__(self, obs, h, c, episode_start):
        parts = list(obs.values()) if isinstance(obs, dict) else [obs]
        values = [*parts, h, c, episode_start]
        feed = {name: np.asarray(v, dtype=np.float32) for name, v in zip(self.names, values, strict=True)}
        return self.run(feed)


def _roundtrip(model, fmt, tmp_path, steps=30, vec_normalize=None):
    """Run the exported step and ``model.predict`` side by side over ``steps`` steps of the model's
    environments (episodes end and start inside); actions equal, states within ATOL. Returns the
    number of episode starts after the first step."""
    step = PolicyStep(model.policy, vec_normalize)
    path = export(step, tmp_path / f"policy{FORMATS[fmt]}", fmt)
    run = _Runner(fmt, path, step)
    env = model.get_env()
    obs = env.reset()
    n_envs = env.num_envs
    starts = np.ones(n_envs, dtype=np.float32)
    shape = (step.n_layers, n_envs, step.hidden_size)
    h, c = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    state, restarts = None, 0
    for _ in range(steps):
        seen = obs if vec_normalize is None else vec_normalize.normalize_obs(obs)
        actions, state = model.predict(seen, state, starts, deterministic=True)
        action, h, c = run(obs, h, c, starts)
        if isinstance(model.action_space, (spaces.Discrete, spaces.MultiDiscrete)):
            assert action.dtype == np.int64
            np.testing.assert_array_equal(action, actions)
        else:
            np.testing.assert_allclose(action, actions, atol=ATOL)
        np.testing.assert_allclose(h, state[0], atol=ATOL)
        np.testing.assert_allclose(c, state[1], atol=ATOL)
        obs, _, dones, _ = env.step(actions)
        starts = dones.astype(np.float32)
        restarts += int(dones.sum())
    return restarts


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", list(CELLS))
def test_every_cell_round_trips_whole_episodes(name, fmt, tmp_path):
    """Dropout on: the export runs the eval-mode step, as predict does (no masks; zoneout's expectation)."""
    model = _model(_cartpole(n_envs=2, seed=0), cell=name, dropout=0.3)
    assert _roundtrip(model, fmt, tmp_path) >= 2, "episodes must start inside the run"


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ["lstm", "ln-gal", "gru"])
def test_stacked_layers_round_trip(name, fmt, tmp_path):
    model = _model(_cartpole(n_envs=3, seed=1), cell=name, dropout=0.2, n_lstm_layers=3,
                   lstm_kwargs=dict(dropout=0.3))  # fmt: skip
    assert _roundtrip(model, fmt, tmp_path) >= 2


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("kind", ["image", "dict"])
def test_cnn_and_dict_observations_round_trip(kind, fmt, tmp_path):
    env = make_vec_env(lambda: CueEnv(kind, delay=3), n_envs=2, seed=0)
    policy = "CnnLstmPolicy" if kind == "image" else "MultiInputLstmPolicy"
    extra = dict(features_extractor_kwargs=dict(features_dim=16)) if kind == "image" else {}
    model = _model(env, policy, cell="gal", dropout=0.2, n_lstm_layers=2, **extra)
    assert _roundtrip(model, fmt, tmp_path, steps=12) >= 4
    inputs, _ = PolicyStep(model.policy).describe()
    if kind == "dict":
        assert [spec.name for spec in inputs[:2]] == ["obs.cue", "obs.clock"], "one input per key"
    else:
        assert inputs[0].shape == ("B", 1, 36, 36), "images as the policy takes them, channel first"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_observation_normalisation_is_baked_in(fmt, tmp_path):
    """The exported step takes raw observations; predict takes VecNormalize's."""
    vec = VecNormalize(_cartpole(n_envs=2, seed=0), clip_obs=1.5)
    model = _model(vec, cell="lstm", algo=RecurrentA2C)
    model.learn(64)  # statistics away from (0, 1), some observations clipped
    vec.training = False
    assert np.abs(vec.obs_rms.mean).max() > 0.01
    model.env = vec.venv  # step the raw environments; normalise by hand in _roundtrip
    assert _roundtrip(model, fmt, tmp_path, vec_normalize=vec) >= 2


@pytest.mark.parametrize("action_space", [spaces.MultiDiscrete([3, 2]), spaces.MultiBinary(3), spaces.Box(-1, 1, (2,))])
def test_other_action_spaces_round_trip(action_space, tmp_path):
    from tests.test_dropin import _Bits

    model = _model(make_vec_env(lambda: _Bits(action_space), n_envs=2, seed=0), cell="gru")
    assert _roundtrip(model, "onnx", tmp_path, steps=12) >= 2


def test_the_batch_is_free(tmp_path):
    """Traced with a batch of 2 and checked with 3 inside export; here a batch of 1 and 5."""
    model = _model(_cartpole(n_envs=1, seed=0), cell="ln")
    step = PolicyStep(model.policy)
    path = export(step, tmp_path / "p.onnx")
    run = _Runner("onnx", path, step)
    for batch in (1, 5):
        inputs = step.example_inputs(batch=batch, seed=batch)
        expected = step(*inputs)
        got = run(*(t.numpy() for t in inputs))
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_allclose(a.numpy(), b, atol=ATOL)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ["lstm", "ln-gal", "gru", "rnn"])
def test_a_nan_stays_in_its_episode(name, fmt, tmp_path):
    """A NaN observation poisons its row's state; an episode start in that row gives the state of a fresh
    episode (reset by selection), and the other rows never see it: in the eager step and the file."""
    model = _model(_cartpole(n_envs=1, seed=0), cell=name)
    step = PolicyStep(model.policy)
    run = _Runner(fmt, export(step, tmp_path / f"p{FORMATS[fmt]}", fmt), step)
    obs, h, c, _ = (t.numpy() for t in step.example_inputs(batch=3, seed=2))
    no_start, start_row0 = np.zeros(3, np.float32), np.array([1, 0, 0], np.float32)
    poisoned = obs.copy()
    poisoned[0, 1] = np.nan

    def eager(*arrays):
        th.distributions.Distribution.set_default_validate_args(False)  # NaN logits in the poisoned row
        try:
            with th.no_grad():
                return [t.numpy() for t in step(*(th.as_tensor(a) for a in arrays))]
        finally:
            th.distributions.Distribution.set_default_validate_args(True)

    for call in (eager, run):
        _, h_bad, c_bad = call(poisoned, h, c, no_start)
        _, h_clean, c_clean = call(obs, h, c, no_start)
        assert np.isnan(h_bad[:, 0]).all()
        np.testing.assert_allclose(h_bad[:, 1:], h_clean[:, 1:], atol=ATOL)
        _, h_next, c_next = call(obs, h_bad, c_bad, start_row0)
        _, h_fresh, c_fresh = call(obs, h_clean, c_clean, start_row0)
        assert np.isfinite(h_next).all() and np.isfinite(c_next).all()
        np.testing.assert_allclose(h_next[:, 0], h_fresh[:, 0], atol=ATOL)
        np.testing.assert_allclose(c_next[:, 0], c_fresh[:, 0], atol=ATOL)


# ---------------------------------------------------------------------- off-policy actors
def _pendulum(n_envs: int, seed: int) -> VecEnv:
    """Pendulum cut at 9 steps (Box actions in [-2, 2]), episode starts inside every run."""
    return make_vec_env(lambda: gym.make("Pendulum-v1", max_episode_steps=9), n_envs=n_envs, seed=seed)


def _off_policy(algo, env, **policy_kwargs):
    """An off-policy model after a few gradient steps (its parameters moved off their initialisation)."""
    model = algo("MlpLstmPolicy", env, learning_starts=16, batch_size=4, seq_len=4, burn_in=1, seed=0, device="cpu",
                 policy_kwargs=dict(lstm_hidden_size=8, net_arch=[8], **policy_kwargs))  # fmt: skip
    model.learn(48)
    return model


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize(
    "algo, make_env, cell",
    [(RecurrentDQN, _cartpole, "lstm"), (RecurrentDQN, _cartpole, "ln-gru"), (RecurrentSAC, _pendulum, "gal"),
     (RecurrentSAC, _pendulum, "gru"), (RecurrentSAC, _cartpole, "lstm")],
)  # fmt: skip
def test_off_policy_actors_round_trip_whole_episodes(algo, make_env, cell, fmt, tmp_path):
    """DQN's greedy action, SAC's mean action (unscaled to Pendulum's bounds; discrete SAC's most likely
    action), and the acting memory's state, as ``model.predict(..., deterministic=True)`` gives them."""
    model = _off_policy(algo, make_env(n_envs=3, seed=1), cell=cell)
    assert _roundtrip(model, fmt, tmp_path, steps=20) >= 3


def test_an_off_policy_run_folder_exports(tmp_path, capsys):
    model = _off_policy(RecurrentSAC, _pendulum(n_envs=2, seed=0), cell="lstm")
    (tmp_path / "run").mkdir()
    model.save(tmp_path / "run" / "model.zip")
    assert main([str(tmp_path / "run"), "--format", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "run" / "model.pt").is_file() and "action: float32 (B, 1)" in printed
    policy, _ = load_policy(tmp_path / "run")
    assert type(policy) is type(model.policy)


# ---------------------------------------------------------------------- run folders and the command line
def _run_dir(tmp_path, **policy_kwargs) -> Path:
    vec = VecNormalize(_cartpole(n_envs=2, seed=0))
    model = _model(vec, cell="gal", dropout=0.2, **policy_kwargs)
    model.learn(32)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.zip")
    vec.save(str(run / "model_vecnormalize.pkl"))
    return run


def test_load_policy_reads_the_model_and_its_statistics(tmp_path):
    run = _run_dir(tmp_path)
    policy, vec_normalize = load_policy(run)
    saved = RecurrentPPO.load(run / "model.zip", device="cpu").policy
    for (k, a), (_, b) in zip(policy.state_dict().items(), saved.state_dict().items(), strict=True):
        assert th.equal(a, b), k
    assert vec_normalize is not None and vec_normalize.obs_rms.count > 32


def test_command_line_writes_both_formats(tmp_path, capsys):
    run = _run_dir(tmp_path)
    assert main([str(run), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert (run / "model.onnx").is_file() and "normalisation baked in" in printed
    assert "h: float32 (n_layers=1, B, H=8)" in printed and "action: int64 (B)" in printed
    out = tmp_path / "elsewhere" / "policy.pt"
    assert main([str(run / "model.zip"), "--format", "torchscript", "--out", str(out)]) == 0
    # Both files compute the saved policy's step, normalisation included.
    step = PolicyStep(*load_policy(run))
    inputs = step.example_inputs(batch=4, seed=3)
    expected = [t.numpy() for t in step(*inputs)]
    for fmt, path in (("onnx", run / "model.onnx"), ("torchscript", out)):
        got = _Runner(fmt, path, step)(*(t.numpy() for t in inputs))
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_allclose(a, b, atol=ATOL)


def test_script_is_a_door(tmp_path):
    run = _run_dir(tmp_path)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "scripts" / "export.py"), str(run)],
                          capture_output=True, text=True, cwd=root, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and (run / "model.onnx").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{run}", "--format", "tflite"], "invalid choice: 'tflite'"),
        (["{missing}"], "expected a run folder holding model.zip, or a model .zip file"),
        (["{notzip}"], "not a saved SB3 model"),
    ],
)
def test_command_line_refuses_bad_input(argv, message, tmp_path, capsys):
    run = _run_dir(tmp_path)
    (tmp_path / "notes.zip").write_text("not a zip")
    paths = dict(run=run, missing=tmp_path / "nowhere", notzip=tmp_path / "notes.zip")
    with pytest.raises(SystemExit) as e:
        main([a.format(**paths) for a in argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_format_is_refused(tmp_path):
    model = _model(_cartpole(n_envs=1, seed=0))
    with pytest.raises(ValueError, match="format 'tflite': expected one of onnx, torchscript"):
        export(model.policy, tmp_path / "p.tflite", "tflite")


def test_a_model_without_a_recurrent_policy_is_refused(tmp_path):
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "CartPole-v1", n_steps=8, device="cpu").save(tmp_path / "ppo.zip")
    with pytest.raises(ValueError, match="holds a ActorCriticPolicy; the export takes the recurrent policies.*DQN"):
        load_policy(tmp_path / "ppo.zip")


class _Spectral(BaseFeaturesExtractor):
    """Features through an FFT, which the ONNX exporter does not know."""

    def __init__(self, observation_space: spaces.Box) -> None:
        super().__init__(observation_space, features_dim=observation_space.shape[0])

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return th.fft.fft(obs).abs()


def test_a_features_extractor_that_does_not_export_is_named(tmp_path):
    model = _model(_cartpole(n_envs=1, seed=0), features_extractor_class=_Spectral)
    with pytest.raises(ValueError, match="cannot export this policy to onnx .features extractor _Spectral"):
        export(model.policy, tmp_path / "p.onnx", "onnx")


class _Branchy(BaseFeaturesExtractor):
    """A data-dependent Python branch: tracing records only the branch the example took."""

    def __init__(self, observation_space: spaces.Box) -> None:
        super().__init__(observation_space, features_dim=observation_space.shape[0])

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return obs if bool(obs.sum() > 1e9) else -obs


def test_a_policy_that_traces_unfaithfully_is_caught(tmp_path):
    """The example inputs take one branch; the check inputs are built to take the other."""
    model = _model(_cartpole(n_envs=1, seed=0), features_extractor_class=_Branchy)
    step = PolicyStep(model.policy)
    small, big = step.example_inputs(batch=2), step.example_inputs(batch=3, seed=1)
    step.example_inputs = lambda batch=2, seed=0: (th.full((2, 4), 1e9), *small[1:]) if seed == 0 else big
    with pytest.raises(RuntimeError, match="differs from the policy on output"):
        export(step, tmp_path / "p.pt", "torchscript")


def test_describe_lists_inputs_and_outputs():
    model = _model(_cartpole(n_envs=1, seed=0), cell="gru", n_lstm_layers=2)
    text = describe(PolicyStep(model.policy))
    assert text.splitlines() == [
        "inputs:",
        "  obs: float32 (B, 4)",
        "  h: float32 (n_layers=2, B, H=8)",
        "  c: float32 (n_layers=2, B, H=8)",
        "  episode_start: float32 (B)",
        "outputs:",
        "  action: int64 (B)",
        "  h_out: float32 (n_layers=2, B, H=8)",
        "  c_out: float32 (n_layers=2, B, H=8)",
    ]
