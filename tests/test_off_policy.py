"""The off-policy agents with memory: the sequence replay buffer's windows, exact replay of collection
from stored states and masks, bad input, save/load/predict, and a small learning check."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from agents.off_policy import RecurrentDQN, RecurrentSAC, SequenceReplayBuffer, bytes_per_step
from agents.policy_core import check_replayable
from tests.cue_envs import CueEnv

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)


def _fill(buffer: SequenceReplayBuffer, steps: int, seed: int = 0) -> None:
    """Synthetic episodes: obs = (env, episode, step) of each env, random lengths, ended by termination
    or truncation; next_obs = (env, episode, step + 1) (the terminal observation at an end)."""
    rng = np.random.default_rng(seed)
    n = buffer.n_envs
    episode, t = np.zeros(n), np.zeros(n)
    starts = np.ones(n, bool)
    h = th.zeros(1, n, buffer.hidden_size)
    for _ in range(steps):
        obs = np.stack([np.arange(n), episode, t], 1).astype(np.float32)
        done = rng.random(n) < 0.15
        truncated = done & (rng.random(n) < 0.5)
        infos = [{"TimeLimit.truncated": bool(x)} for x in truncated]
        # the stored state encodes the step too, to check which state starts a window
        state = (h + th.as_tensor(obs[:, 2])[None, :, None], h + th.as_tensor(obs[:, 1])[None, :, None])
        buffer.add(obs, obs + [0, 0, 1], np.zeros((n, 1)), obs[:, 2], done, infos,
                   episode_start=starts, states=[state], masks=[None])  # fmt: skip
        cut = rng.random(n) < 0.02  # an episode cut without an end (a new learn() resets the envs)
        starts = done | cut
        episode, t = np.where(starts, episode + 1, episode), np.where(starts, 0, t + 1)


@pytest.mark.parametrize("full", [False, True])
def test_windows_stay_in_one_episode_of_one_env(full: bool) -> None:
    buffer = SequenceReplayBuffer(300 if full else 3000, OBS, spaces.Discrete(2), 4, seq_len=10, burn_in=3,
                                  device="cpu", n_envs=3)  # fmt: skip
    _fill(buffer, 400 if full else 300)
    index, env_idx, back, age = buffer._draw(256)
    data = buffer._windows(index, env_idx, back, age, None)
    obs = data.observations.numpy()  # (11, 256, 3)
    loss = data.loss_mask.numpy().astype(bool)
    ends = data.ends.numpy()
    assert np.any(back < 3) and np.any(back == 3)
    for j in range(256):
        loss_pos = np.flatnonzero(loss[:, j])
        assert loss_pos[0] == 3 and np.all(np.diff(loss_pos) == 1)  # loss steps start after the burn-in
        assert ends[j] == loss_pos[-1] + 1
        first = 3 - back[j]  # the first real position
        assert np.all(obs[:first, j] == 0)  # left padding, only where the burn-in reaches the episode's start
        if first > 0:
            assert obs[first, j, 2] == 0
        seg = obs[first : ends[j] + 1, j]
        assert np.all(seg[:, 0] == env_idx[j]) and np.all(seg[:, 1] == seg[0, 1])  # one env, one episode
        assert np.all(np.diff(seg[:, 2]) == 1)  # consecutive steps; the bootstrap observation is the next one
        assert data.episode_starts[first, j] == (seg[0, 2] == 0)
        assert not data.episode_starts[first + 1 : ends[j] + 1, j].any()
        expected_state = 0.0 if first > 0 else seg[0, 2]  # zeros before a left padding, else the stored state
        assert float(data.states[0][0][0, j, 0]) == expected_state
        assert np.all(data.rewards[loss_pos, j].numpy() == obs[loss_pos, j, 2])
        # the window stops at its episode's end: a termination there is marked
        assert not data.terminated[first : ends[j] - 1, j].any()
        assert np.all(obs[ends[j] + 1 :, j] == 0) and not loss[ends[j] :, j].any()  # right padding, out of the loss


def test_buffer_bytes_per_step() -> None:
    buffer = SequenceReplayBuffer(1000, OBS, spaces.Box(-1, 1, (2,)), 64, seq_len=8, n_envs=2, n_layers=2,
                                  mask_widths=(64, 0), device="cpu")  # fmt: skip
    per_step = bytes_per_step(OBS, spaces.Box(-1, 1, (2,)), 64, n_layers=2, n_memories=2, mask_widths=(64, 0))
    assert buffer.nbytes == per_step * 1000
    # the figure the docstring and the README give: 2 memories of 64 units, 3 float32 observations
    assert bytes_per_step(OBS, spaces.Box(-1, 1, (1,)), 64, n_memories=2) == 1069
    # the lean replay keeps one state in 4: under a third of the bytes
    assert bytes_per_step(OBS, spaces.Box(-1, 1, (1,)), 64, n_memories=2, state_stride=4) == 301
    lean = SequenceReplayBuffer(1000, OBS, spaces.Box(-1, 1, (1,)), 64, seq_len=8, n_envs=2, mask_widths=(0, 0),
                                state_stride=4, device="cpu")  # fmt: skip
    assert lean.nbytes == 301 * 1000


def test_lean_windows_start_at_a_kept_state_or_an_episode_start() -> None:
    """With state_stride=k a window's burn-in starts at a step whose state is kept, or at its episode's first
    step (state zero); every step is still a loss step of some window."""
    buffer = SequenceReplayBuffer(120, OBS, spaces.Discrete(2), 2, seq_len=6, burn_in=2, n_envs=2, state_stride=3,
                                  device="cpu")  # fmt: skip
    rng = np.random.default_rng(0)
    steps = np.zeros(2, dtype=int)
    for t in range(200):  # episodes of random lengths; the state before step t is t everywhere
        start = steps == 0
        done = rng.random(2) < 0.08
        state = th.full((1, 2, 2), float(t))
        buffer.add(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), done, [{}, {}],
                   episode_start=start, states=[(state, state)], masks=[None])  # fmt: skip
        steps = np.where(done, 0, steps + 1)
    np.random.seed(0)  # noqa: NPY002
    index, env, back, _ = buffer._draw(2000)
    in_episode = buffer.episode_steps[index, env]
    first = (index - back) % buffer.buffer_size
    assert np.all((back == in_episode) | ((back == 2) & (first % 3 == 0)))
    assert np.all(back == np.minimum(2, in_episode))
    covered = {((i + p) % buffer.buffer_size, e) for i, e in zip(index, env, strict=True) for p in range(4)}
    stored = {(i, e) for i in range(buffer.size()) for e in range(2)}
    assert len(stored - covered) <= 2 * 2  # every step is a loss step of some window, but the oldest burn_in steps
    data = buffer.sample(64)
    assert data.observations.shape[0] == buffer.seq_len + 1 == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(buffer_size=50, seq_len=32, n_envs=2), "buffer_size=50"),
        (dict(buffer_size=1000, seq_len=8, burn_in=8), "burn_in=8"),
        (dict(buffer_size=1000, seq_len=0), "seq_len=0"),
        (dict(buffer_size=1000, seq_len=8, burn_in=4, state_stride=5), "state_stride=5: expected at most"),
        (dict(buffer_size=1000, seq_len=8, state_stride=0), "state_stride=0: expected a positive integer"),
    ],
)
def test_bad_buffer_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SequenceReplayBuffer(observation_space=OBS, action_space=spaces.Discrete(2), hidden_size=4, **kwargs)


def test_bad_algorithm_arguments() -> None:
    with pytest.raises(ValueError, match="Box"):
        RecurrentDQN("MlpLstmPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match="burn_in=32"):
        RecurrentSAC("MlpLstmPolicy", "Pendulum-v1", seq_len=32, burn_in=32)
    with pytest.raises(ValueError, match="buffer_size=64"):
        RecurrentDQN("MlpLstmPolicy", make_vec_env("CartPole-v1", n_envs=4), buffer_size=64, seq_len=32)
    with pytest.raises(ValueError, match="n_steps=0"):
        RecurrentDQN("MlpLstmPolicy", "CartPole-v1", n_steps=0)


@pytest.mark.parametrize(
    "algo, kwargs, message",
    [
        (RecurrentSAC, dict(target_update_interval=0), "target_update_interval=0: expected a positive integer"),
        (RecurrentDQN, dict(target_update_interval=0), "target_update_interval=0: expected a positive integer"),
        (RecurrentSAC, dict(ent_coef=-0.1), r"ent_coef=-0.1: expected a number >= 0"),
        (RecurrentSAC, dict(ent_coef="autox"), r"ent_coef='autox': expected 'auto', 'auto_<initial value>'"),
        (RecurrentSAC, dict(batch_size=0), "batch_size=0: expected a positive integer"),
        (RecurrentDQN, dict(gamma=2.0), r"gamma=2.0: expected a number in \[0, 1\]"),
        (RecurrentSAC, dict(tau=5.0), r"tau=5.0: expected a number in \[0, 1\]"),
        (RecurrentDQN, dict(learning_rate="abc"), "learning_rate='abc': expected a number > 0 or a schedule"),
        (RecurrentDQN, dict(exploration_final_eps=1.5), r"exploration_final_eps=1.5: expected a number in \[0, 1\]"),
        (RecurrentDQN, dict(learning_starts=-1), "learning_starts=-1: expected an integer >= 0"),
    ],
)
def test_bad_hyperparameters_are_named(algo, kwargs, message) -> None:  # noqa: ANN001
    env_id = "CartPole-v1" if algo is RecurrentDQN else "Pendulum-v1"
    with pytest.raises(ValueError, match=message):
        algo("MlpLstmPolicy", env_id, policy_kwargs=dict(lstm_hidden_size=8), **kwargs)
    model = algo("MlpLstmPolicy", env_id, policy_kwargs=dict(lstm_hidden_size=8))
    with pytest.raises(ValueError, match=message):  # a model loaded with changed arguments is checked too
        model.__dict__.update(kwargs)
        model._setup_model()


def test_learning_that_would_never_start_is_said() -> None:
    model = RecurrentDQN("MlpLstmPolicy", "CartPole-v1", learning_starts=1000, policy_kwargs=dict(lstm_hidden_size=8))
    with pytest.warns(UserWarning, match="learning_starts=1000: at or above the 200 steps"):
        model.learn(200)


class _Unrecorded(th.nn.Module):
    """A memory with dropout that does not report its masks."""

    mask_width, input_size, masks_in_eval, last_masks = 8, 3, False, None

    def forward(self, x, state, starts):  # noqa: ANN001, ANN201
        return x, state


def test_a_memory_that_cannot_replay_its_masks_is_refused() -> None:
    with pytest.raises(ValueError, match="cell='custom'"):
        check_replayable(_Unrecorded(), "custom")


def _collect_and_replay(model, env, steps: int, record) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Run the model's own collection for ``steps`` vector steps, recording ``record(policy, obs, states,
    starts)`` (the outputs at collection, before the step) by (buffer position, env); then replay every
    window of a sample and return (collected, replayed) outputs at the real positions."""
    policy, buffer = model.policy, model.replay_buffer
    collected: dict[tuple[int, int], np.ndarray] = {}
    original = type(buffer).add

    def add(self, *args, **kwargs):  # noqa: ANN001, ANN202
        obs = obs_as_tensor(np.asarray(args[0], dtype=np.float32), model.device)
        starts = th.as_tensor(kwargs["episode_start"], dtype=th.float32)
        with th.no_grad(), policy.dropout_masks_on():
            out = record(policy, obs, kwargs["states"], starts, kwargs["masks"])
        for e in range(self.n_envs):
            collected[(self.pos, e)] = out[e]
        original(self, *args, **kwargs)

    buffer.add = add.__get__(buffer)
    model.learn(steps * env.num_envs)
    del buffer.add
    return collected


def _replayed_positions(data, buffer, index, env_idx, back):  # noqa: ANN001
    """(position, window, buffer index, env) of every real step of the windows."""
    for j in range(len(index)):
        for p in range(buffer.burn_in - back[j], int(data.ends[j])):
            yield p, j, (index[j] + p - buffer.burn_in) % buffer.buffer_size, env_idx[j]


CELL_CASES = [
    dict(cell="gal", dropout=0.3),
    dict(cell="zoneout", dropout=0.2, n_lstm_layers=2, lstm_kwargs=dict(dropout=0.2)),
    dict(cell="ln-semeniuta", dropout=0.2),
    dict(cell="gru-gal", dropout=0.3),
]


@pytest.mark.parametrize("state_stride", [1, 3])
@pytest.mark.parametrize("policy_kwargs", CELL_CASES, ids=lambda k: k["cell"])
def test_dqn_replays_collected_q_values(policy_kwargs: dict, state_stride: int) -> None:
    """The windows' Q-values are the collected ones, with every state kept and with one in three (the lean
    replay's burn-in reaches back to a kept state)."""
    env = make_vec_env("CartPole-v1", n_envs=3, seed=0, env_kwargs=dict(max_episode_steps=25))
    model = RecurrentDQN("MlpLstmPolicy", env, learning_starts=10_000, seq_len=12, burn_in=4, seed=0,
                         state_stride=state_stride,
                         policy_kwargs=dict(lstm_hidden_size=16, **policy_kwargs))  # fmt: skip

    def record(policy, obs, states, starts, masks):  # noqa: ANN001, ANN202
        net = policy.q_net.net
        latent, _ = net.memory(net.features(obs, policy)[None], states[0], starts[None], masks[0])
        return policy.q_net.head(latent[0]).numpy()

    collected = _collect_and_replay(model, env, 60, record)
    buffer = model.replay_buffer
    index, env_idx, back, age = buffer._draw(64)
    data = buffer._windows(index, env_idx, back, age, None)
    model.policy.set_training_mode(True)
    with th.no_grad():
        replayed = model.window_q_values(data).numpy()
    worst, n = 0.0, 0
    for p, j, i, e in _replayed_positions(data, buffer, index, env_idx, back):
        worst = max(worst, np.abs(replayed[p, j] - collected[(i, e)]).max())
        n += 1
    assert n > 64 and worst < 1e-5
    # the burn-in recomputes the states stored at the first loss steps (logged as train/state_drift)
    assert model.state_drift(model.policy.q_net.net, data) < 1e-5


@pytest.mark.parametrize("state_stride", [1, 2])
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("share_memory", [False, True])
def test_sac_replays_collected_log_probabilities(env_id: str, share_memory: bool, state_stride: int) -> None:
    env = make_vec_env(env_id, n_envs=2, seed=1, env_kwargs=dict(max_episode_steps=20))
    model = RecurrentSAC("MlpLstmPolicy", env, learning_starts=10_000, seq_len=10, burn_in=3, seed=1,
                         state_stride=state_stride,
                         policy_kwargs=dict(cell="gal", dropout=0.3, lstm_hidden_size=16,
                                            share_memory=share_memory))  # fmt: skip
    discrete = env_id == "CartPole-v1"

    def record(policy, obs, states, starts, masks):  # noqa: ANN001, ANN202
        net = policy.actor.net
        latent, _ = net.memory(net.features(obs, policy)[None], states[0], starts[None], masks[0])
        params = policy.distribution(latent[0])
        return th.log_softmax(params, -1).numpy() if discrete else th.cat(params, -1).numpy()

    collected = _collect_and_replay(model, env, 50, record)
    buffer = model.replay_buffer
    index, env_idx, back, age = buffer._draw(48)
    data = buffer._windows(index, env_idx, back, age, None)
    model.policy.set_training_mode(True)
    with th.no_grad():
        latent_pi, _, _ = model.policy.latents(data, model.burn_in)
        params = model.policy.distribution(latent_pi)
        replayed = (th.log_softmax(params, -1) if discrete else th.cat(params, -1)).numpy()
        # and the stored actions' log-probabilities, from the replayed and the collected parameters
        if not discrete:
            logp = model.policy.log_prob(latent_pi[:-1], data.actions).numpy()
    worst = 0.0
    for p, j, i, e in _replayed_positions(data, buffer, index, env_idx, back):
        worst = max(worst, np.abs(replayed[p, j] - collected[(i, e)]).max())
        if not discrete and p < buffer.seq_len:
            mean, log_std = (th.as_tensor(x) for x in np.split(collected[(i, e)], 2))
            dist = model.policy.actor.distribution.proba_distribution(mean[None], log_std[None])
            worst = max(worst, abs(float(dist.log_prob(data.actions[p, j][None])) - logp[p, j]))
    assert worst < 1e-5


@pytest.mark.parametrize("algo", [RecurrentDQN, RecurrentSAC])
def test_dropout_defaults_to_the_cells(algo) -> None:  # noqa: ANN001
    """``cell="gal"`` means Gal's dropout at the registry's default under DQN and SAC, as under PPO; an
    explicit 0 turns it off; the default is recorded for save/load."""
    from rl_lstm.registry import default_dropout

    env_id = "CartPole-v1" if algo is RecurrentDQN else "Pendulum-v1"
    model = algo("MlpLstmPolicy", env_id, policy_kwargs=dict(cell="gal", lstm_hidden_size=8))
    nets = model.policy.stored_memories()
    assert nets and all(layer.dropout == default_dropout("gal") > 0 for m in nets for layer in m.memory.layers)
    assert model.policy._get_constructor_parameters()["dropout"] == default_dropout("gal")
    off = algo("MlpLstmPolicy", env_id, policy_kwargs=dict(cell="gal", dropout=0.0, lstm_hidden_size=8))
    assert all(layer.dropout == 0.0 for m in off.policy.stored_memories() for layer in m.memory.layers)


@pytest.mark.parametrize("algo", [RecurrentDQN, RecurrentSAC])
def test_save_load_predict_round_trip(algo, tmp_path) -> None:  # noqa: ANN001
    env_id = "CartPole-v1" if algo is RecurrentDQN else "Pendulum-v1"
    env = VecNormalize(make_vec_env(env_id, n_envs=2, seed=0))
    model = algo("MlpLstmPolicy", env, learning_starts=64, seq_len=8, burn_in=2, batch_size=4, seed=0,
                 policy_kwargs=dict(cell="ln-gal", dropout=0.1, lstm_hidden_size=8))  # fmt: skip
    model.learn(200)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = algo.load(tmp_path / "model.zip", env=env)
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    assert np.array_equal(loaded.replay_buffer.states, model.replay_buffer.states)
    obs = env.reset()
    state_a = state_b = None
    starts = np.ones(2, bool)
    for _ in range(10):
        a, state_a = model.predict(obs, state_a, starts, deterministic=True)
        b, state_b = loaded.predict(obs, state_b, starts, deterministic=True)
        assert np.array_equal(a, b) and np.array_equal(state_a[0], state_b[0])
        obs, _, starts, _ = env.step(a)
    loaded.learn(100, reset_num_timesteps=False)  # training goes on from the loaded buffer


@pytest.mark.parametrize("algo", [RecurrentDQN, RecurrentSAC])
def test_evaluation_carries_the_memory(algo) -> None:  # noqa: ANN001
    """SB3's evaluate_policy hands each step the state the previous step returned, and resets it only
    where an episode starts: the state carried is the memory's (non-zero, changing), and an action depends
    on it (the same observation from the zero state acts otherwise)."""
    env_id = "CartPole-v1" if algo is RecurrentDQN else "Pendulum-v1"
    env = make_vec_env(env_id, n_envs=1, seed=0)
    model = algo("MlpLstmPolicy", env, seed=0, policy_kwargs=dict(lstm_hidden_size=8))
    calls = []
    predict = model.policy.predict

    def spy(observation, state=None, episode_start=None, deterministic=False):  # noqa: ANN001, ANN202
        actions, new_state = predict(observation, state, episode_start, deterministic)
        calls.append((observation, state, None if episode_start is None else episode_start.copy(), new_state))
        return actions, new_state

    model.policy.predict = spy
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True)
    assert len(calls) == sum(lengths)
    firsts = np.cumsum([0, *lengths[:-1]])
    for t, (_, state, start, _) in enumerate(calls):
        assert bool(start[0]) == (t in firsts), f"step {t}: episode_start {start}"
        if t > 0:
            assert state is not None and np.array_equal(state[0], calls[t - 1][3][0]), f"step {t}: state not carried"
    assert not np.allclose(calls[5][1][0], 0.0), "the carried state is zeros"
    obs, state = calls[5][0], calls[5][1]
    if algo is RecurrentSAC:  # a continuous action shows the state's effect on any observation
        carried, _ = predict(obs, state, np.zeros(1, bool), deterministic=True)
        fresh, _ = predict(obs, None, np.zeros(1, bool), deterministic=True)
        assert not np.allclose(carried, fresh)


def test_dqn_learns_a_cue_through_a_delay() -> None:
    """Dict observations (SB3's CombinedExtractor); the cue shows at the first step only and the answer
    counts at the third: a memoryless policy expects 0.5 a episode, the memory 1 (1.0 on seeds 0, 1, 2
    at these settings)."""
    env = DummyVecEnv([lambda: CueEnv("dict", delay=2)] * 4)
    env.seed(0)
    model = RecurrentDQN("MultiInputLstmPolicy", env, learning_starts=200, seq_len=4, burn_in=1, batch_size=16,
                         learning_rate=3e-3, train_freq=1, target_update_interval=200, exploration_fraction=0.3,
                         n_steps=3, seed=0, policy_kwargs=dict(lstm_hidden_size=16, net_arch=[16]))  # fmt: skip
    model.learn(1_600)
    returns, _ = evaluate_policy(model, DummyVecEnv([lambda: Monitor(CueEnv("dict", delay=2))]), n_eval_episodes=40)
    assert returns >= 0.95


@pytest.mark.parametrize(
    ("algo", "env_id"),
    [("dqn", "CartPole-v1"), ("sac", "TMaze-v0"), ("sac-mlp", "Pendulum-v1")],
)  # fmt: skip
def test_command_line_trains_evaluates_and_saves(algo: str, env_id: str, tmp_path) -> None:  # noqa: ANN001
    from agents.training import ALGOS, TrainConfig, train

    windows = {"seq_len": 8, "burn_in": 2} if algo in ("dqn", "sac") else {}
    config = TrainConfig(env=env_id, algo=algo, n_envs=2, hidden_size=8, total_timesteps=240, eval_episodes=1,
                         tensorboard=False, normalize="obs",
                         hyperparams=dict(learning_starts=200, batch_size=4, buffer_size=1000, **windows))  # fmt: skip
    record = train(config, tmp_path, log=lambda _: None)
    assert record["timesteps"] == 240 and np.isfinite(record["mean_return"])
    ALGOS[algo].cls.load(tmp_path / "model.zip")


def test_n_step_targets_stop_at_the_window_end_and_at_termination() -> None:
    from agents.off_policy.dqn import n_step_targets

    g = 0.5
    rewards = th.tensor([[1.0], [2.0], [4.0], [0.0]])  # positions 0..2 real, 3 the bootstrap observation
    terminated = th.tensor([[0.0], [0.0], [1.0], [0.0]])
    values = th.tensor([[10.0], [20.0], [40.0], [80.0], [0.0]])
    targets = n_step_targets(rewards, terminated, values, th.tensor([3]), g, n=2)[:3, 0]
    expected = [1 + g * 2 + g**2 * 40, 2 + g * 4, 4.0]  # the terminated step's value is never added
    assert th.allclose(targets, th.tensor(expected))
    alive = n_step_targets(rewards, th.zeros_like(terminated), values, th.tensor([3]), g, n=2)[:3, 0]
    assert th.allclose(alive, th.tensor([1 + g * 2 + g**2 * 40, 2 + g * 4 + g**2 * 80, 4 + g * 80]))
