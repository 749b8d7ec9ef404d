"""scripts/train.py end to end: happy path, bad input, resume, signals, determinism."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agents import RecurrentPPO

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "scripts" / "train.py")
TINY = [
    "--n-envs", "2", "--hidden-size", "8", "--eval-episodes", "2", "--checkpoint-freq", "64",
    "--hyperparams", "n_steps=16", "batch_size=32", "seq_len=16", "n_epochs=1",
]  # fmt: skip


def run(*args: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, TRAIN, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs
    )


def test_happy_path_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    proc = run("--env", "CartPole-v1", "--cell", "gal", "--total-timesteps", "256", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("eval CartPole-v1 ppo/gal: mean_return=") and "over 2 episodes" in last
    record = json.loads((out / "eval.json").read_text())
    assert set(record) >= {"mean_return", "std_return", "episodes", "timesteps"}
    assert record["episodes"] == 2 and record["timesteps"] >= 256
    for name in ("model.zip", "config.yaml", "progress.csv", "checkpoints/last.zip", "checkpoints/last.json"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*")), "TensorBoard events"
    config = (out / "config.yaml").read_text()
    assert "cell: gal" in config and "dropout: 0.1" in config and "n_steps: 16" in config
    progress = [line for line in proc.stdout.splitlines() if line.split(" ", 1)[0].endswith("/256")]
    assert progress and progress[-1].startswith("256/256 steps: mean return"), "progress without a terminal"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "CartPole-v9"], "not a registered Gymnasium id; closest: CartPole-v1"),
        (["--cell", "mgu"], "invalid choice: 'mgu'"),
        (["--dropout", "1.5"], r"invalid value '1.5': expected a number in [0, 1)"),
        (["--hidden-size", "0"], "invalid value '0': expected a positive integer"),
        (["--n-envs", "-2"], "invalid value '-2': expected a positive integer"),
        (["--hyperparams", "n_stepz=8"], "hyperparams n_stepz: not an argument of RecurrentPPO; closest: n_steps"),
        (["--seed", "-1"], "invalid value '-1': expected an integer >= 0"),
        (["--device", "bogus"], "device='bogus': expected cpu, cuda, cuda:N or auto"),
        (["--hyperparams", "seed=3"], "hyperparams seed: set by the run itself, not by --hyperparams; use --seed"),
        (["--hyperparams", "device=cpu"], "hyperparams device: set by the run itself, not by --hyperparams; use --dev"),
        (["--hyperparams", "policy_kwargs={cell: gal}"], "policy_kwargs cell: the memory is set with --cell"),
        (["--hyperparams", "policy_kwargs={optimizer_class: adamx}"], "optimizer_class='adamx': expected one of adam"),
        (["--hyperparams", "policy_kwargs=dict(net_arch=[64"], "policy_kwargs='dict(net_arch=[64': expected a mapping"),
        (["--hyperparams", "learning_rate=lin_x"], "learning_rate='lin_x': expected lin_<number>"),
        (["--algo", "ppo-mlp", "--cell", "ln-gal"], "cell='ln-gal': algo 'ppo-mlp' has no memory cell"),
        (["--normalize", "rewards"], "argument --normalize: invalid choice: 'rewards'"),
        (["--hyperparams", "seq_len=7"], "seq_len=7: expected a positive divisor of n_steps=32"),
        (["--env-package", "no_such_module_xyz"], "--env-package 'no_such_module_xyz': cannot import it"),
        (["--resume", "/nonexistent/run"], "--resume '/nonexistent/run': expected a run folder"),
        (["--hyperparams", "n_epochs=0"], "n_epochs=0: expected a positive integer"),
        (["--hyperparams", "gamma=1.5"], "gamma=1.5: expected a number in [0, 1]"),
        (["--hyperparams", "gae_lambda=2"], "gae_lambda=2: expected a number in [0, 1]"),
        (["--hyperparams", "ent_coef=-1"], "ent_coef=-1: expected a number >= 0"),
        (["--hyperparams", "max_grad_norm=-1"], "max_grad_norm=-1: expected a number > 0"),
        (["--hyperparams", "learning_rate=abc"], "learning_rate='abc': expected a number > 0 or a schedule"),
        (["--algo", "dqn", "--hyperparams", "learning_starts=100"], "learning_starts=100: at or above --total-time"),
        (["--algo", "sac", "--env", "Pendulum-v1", "--hyperparams", "tau=5.0"], "tau=5.0: expected a number in [0, 1]"),
        (["--algo", "dqn", "--hyperparams", "target_update_interval=0"], "target_update_interval=0: expected a"),
        (["--algo", "dqn", "--hyperparams", "state_stride=0"], "state_stride=0: expected a positive integer"),
        (["--algo", "sac", "--hyperparams", "state_stride=40"], "state_stride=40: expected at most seq_len - burn_in"),
        (["--hyperparams", "clip_range=abc"], "clip_range='abc': expected a number > 0 or a schedule"),
        (["--hyperparams", "gamma=abc"], "gamma='abc': expected a number in [0, 1]"),
        (["--hyperparams", "learning_rate=lin_-1"], "goes from -1.0 to 0.0"),
        (["--hyperparams", "target_kl=0"], "target_kl=0: expected a number > 0"),
        (["--hyperparams", "vf_coef=abc"], "vf_coef='abc': expected a number >= 0"),
        (["--hyperparams", "normalize=true"], "hyperparams normalize: a setting of the run"),
        (["--hyperparams", "normalize=true"], "use --normalize"),
        (["--hyperparams", "n_envs=4"], "use --n-envs"),
        (["--env", "LunarLander-v3"], "env='LunarLander-v3': a package it needs is not installed: Box2D"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message, tmp_path):
    proc = run(*args, "--total-timesteps", "64", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists(), "nothing is written before the run is built"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_an_error_not_a_silent_fallback(tmp_path):
    proc = run("--device", "cuda", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "no such CUDA device on this machine" in proc.stderr


def test_out_on_an_existing_file_is_an_error(tmp_path):
    out = tmp_path / "file"
    out.write_text("not a folder\n")
    proc = run("--total-timesteps", "64", "--out", str(out))
    assert proc.returncode == 2 and "--out" in proc.stderr and "an existing file" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and out.read_text() == "not a folder\n"


def test_a_missing_env_module_names_it(tmp_path):
    (tmp_path / "needs_a_module.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('NeedsAModule-v0', entry_point='no_such_physics_engine_xyz:Env')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = run("--env", "NeedsAModule-v0", "--env-package", "needs_a_module", "--out", str(tmp_path / "run"), env=env)
    assert proc.returncode == 2 and "no_such_physics_engine_xyz" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_a_failed_build_leaves_an_existing_run_untouched(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("cell: gal\n")
    proc = run("--out", str(out), "--cell", "ln", "--hyperparams", "n_steps=16", "seq_len=7", "--n-envs", "2")
    assert proc.returncode == 2 and "seq_len=7" in proc.stderr, proc.stderr
    assert (out / "config.yaml").read_text() == "cell: gal\n"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]


def test_numbers_in_exponent_form_are_numbers(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "hp.yml").write_text("learning_rate: 3e-4\n")
    proc = run("--total-timesteps", "64", "--out", str(out), *TINY, "ent_coef=1e-2", str(tmp_path / "hp.yml"))
    assert proc.returncode == 0, proc.stderr
    algo_kwargs = yaml.safe_load((out / "config.yaml").read_text())["algo_kwargs"]
    assert algo_kwargs["learning_rate"] == 3e-4 and algo_kwargs["ent_coef"] == 1e-2


def test_env_package_and_yaml_hyperparams(tmp_path):
    (tmp_path / "my_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyCartPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',\n"
        "             max_episode_steps=50)\n"
    )
    (tmp_path / "hp.yml").write_text("n_steps: 8\nlearning_rate: 0.0005\npolicy_kwargs:\n  net_arch: [16]\n")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = run(
        "--env", "MyCartPole-v0", "--env-package", "my_envs", "--algo", "a2c", "--cell", "ln-zoneout",
        "--total-timesteps", "128", "--n-envs", "2", "--eval-episodes", "1", "--out", str(out),
        "--hyperparams", str(tmp_path / "hp.yml"), "--no-tensorboard", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "eval MyCartPole-v0 a2c/ln-zoneout" in proc.stdout
    assert not list(out.glob("events.out.tfevents.*"))


@pytest.mark.parametrize("flag, norm_reward", [(["--normalize"], True), (["--normalize", "obs"], False)])
def test_normalize_saves_statistics(flag, norm_reward, tmp_path):
    out = tmp_path / "run"
    proc = run(*flag, "--total-timesteps", "128", "--eval-freq", "64", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    for stats in ("model_vecnormalize.pkl", "checkpoints/last_vecnormalize.pkl", "best_model_vecnormalize.pkl"):
        assert (out / stats).is_file(), stats
    with open(out / "model_vecnormalize.pkl", "rb") as f:
        saved = pickle.load(f)
    assert saved.norm_obs and saved.norm_reward is norm_reward
    recorded = yaml.safe_load((out / "config.yaml").read_text())["normalization"]
    assert recorded == ("obs-reward" if norm_reward else "obs")


def test_resume_continues_the_same_run(tmp_path):
    """A finished run, resumed with only a new budget: its own configuration (cell, dropout, normalisation),
    its final model (newer than its last checkpoint) and statistics; its config.yaml untouched."""
    out = tmp_path / "run"
    proc = run("--cell", "gal", "--dropout", "0.2", "--normalize", "--total-timesteps", "192", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    original = (out / "config.yaml").read_text()
    with open(out / "model_vecnormalize.pkl", "rb") as f:
        count = pickle.load(f).obs_rms.count
    proc = run("--resume", str(out), "--total-timesteps", "320")
    assert proc.returncode == 0, proc.stderr
    assert "overridden: total_timesteps=320 (was 192)" in proc.stdout
    assert "(128 steps to go;" in proc.stdout, "from model.zip (192 steps), not checkpoints/last.zip (128)"
    assert "ppo/gal" in proc.stdout.strip().splitlines()[-1]
    assert (out / "config.yaml").read_text() == original
    resumed = yaml.safe_load((out / "config.resumed-192.yaml").read_text())
    assert (resumed["cell"], resumed["dropout"], resumed["normalization"]) == ("gal", 0.2, "obs-reward")
    with open(out / "model_vecnormalize.pkl", "rb") as f:
        assert pickle.load(f).obs_rms.count > count + 100, "the statistics carried on"


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, TRAIN, "--total-timesteps", "10000000", "--out", str(out), *TINY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 900) -> int:
    deadline = time.time() + timeout
    marker = out / "checkpoints" / "last.json"
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if marker.is_file():
            steps = json.loads(marker.read_text())["timesteps"]
            if steps >= 128:
                return steps
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no checkpoint written")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_signal_saves_the_model(sig, code, tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    try:
        _wait_for_checkpoint(proc, out)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never leave a 10M-step run behind
    assert proc.returncode == code, stderr
    assert (out / "model.zip").is_file()
    saved = json.loads((out / "checkpoints" / "last.json").read_text())["timesteps"]
    assert saved >= 128


def test_sigkill_keeps_last_checkpoint_and_resume_carries_on(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    try:
        _wait_for_checkpoint(proc, out)
    finally:
        proc.kill()
    proc.wait(timeout=30)
    assert not (out / "model.zip").exists()
    steps = RecurrentPPO.load(out / "checkpoints" / "last.zip", device="cpu").num_timesteps  # complete and loadable
    assert steps >= 128
    target = steps + 128
    proc = run("--resume", str(out), "--total-timesteps", str(target), "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert f"({target - steps} steps to go;" in proc.stdout
    record = json.loads((out / "eval.json").read_text())
    assert target <= record["timesteps"] < target + 64


def _curve(out: Path) -> list[tuple[str, str]]:
    with open(out / "progress.csv") as f:
        return [(r["time/total_timesteps"], r.get("rollout/ep_rew_mean", "")) for r in csv.DictReader(f)]


def test_same_seed_same_learning_curve(tmp_path):
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = run("--cell", "moon", "--dropout", "0.3", "--total-timesteps", "384", "--seed", "3", "--out", str(out),
                   *TINY)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        results.append((_curve(out), json.loads((out / "eval.json").read_text())["mean_return"]))
    assert results[0] == results[1]
    assert len(results[0][0]) >= 5


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run of 192 steps (gal cell), which the resume tests copy rather than train again."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = run("--cell", "gal", "--total-timesteps", "192", "--out", str(out), "--no-tensorboard", *TINY)
    assert proc.returncode == 0, proc.stderr
    return out


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def test_resume_applies_changed_arguments_and_keeps_the_logs(finished, tmp_path):
    """--hyperparams on resume changes the model's arguments (not only the record), merges into the recorded
    overrides, and the continuation appends to progress.csv and log.txt."""
    out = _copy(finished, tmp_path)
    rows_before = (out / "progress.csv").read_text().splitlines()
    log_before = (out / "log.txt").read_text()
    proc = run("--resume", str(out), "--total-timesteps", "256", "--hyperparams", "ent_coef=0.5", "n_epochs=2")
    assert proc.returncode == 0, proc.stderr
    assert "ent_coef=0.5 (was 0.0)" in proc.stdout and "n_epochs=2 (was 1)" in proc.stdout
    model = RecurrentPPO.load(out / "model.zip", device="cpu")
    assert (model.ent_coef, model.n_epochs, model.n_steps, model.batch_size) == (0.5, 2, 16, 32)
    resumed = yaml.safe_load((out / "config.resumed-192.yaml").read_text())
    assert resumed["hyperparams"] == dict(n_steps=16, batch_size=32, seq_len=16, n_epochs=2, ent_coef=0.5)
    rows_after = (out / "progress.csv").read_text().splitlines()
    assert rows_after[: len(rows_before)] == rows_before and len(rows_after) == len(rows_before) + 2
    assert (out / "log.txt").read_text().startswith(log_before)
    # The next resume starts from the configuration last recorded, not from the first one.
    proc = run("--resume", str(out), "--total-timesteps", "320")
    assert proc.returncode == 0, proc.stderr
    assert "config.resumed-192.yaml" in proc.stdout
    assert RecurrentPPO.load(out / "model.zip", device="cpu").ent_coef == 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cell", "ln"], "--cell 'ln': a resumed run keeps its cell ('gal'"),
        (["--hidden-size", "16"], "--hidden-size 16: a resumed run keeps its hidden_size (8"),
        (["--env", "CartPoleNoVel-v1"], "--env 'CartPoleNoVel-v1': a resumed run keeps its env"),
        (["--hyperparams", "policy_kwargs={net_arch: [16]}"], "net_arch=[16] (the model's: {'pi': [64], 'vf': [64]})"),
        (["--normalize"], "normalize='obs-reward', but the model learned without normalised observations"),
    ],
)
def test_resume_refuses_what_the_saved_model_fixes(args, message, finished, tmp_path):
    out = _copy(finished, tmp_path)
    before = sorted(p.name for p in out.iterdir())
    proc = run("--resume", str(out), "--total-timesteps", "256", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_reads_a_hand_edited_config(finished, tmp_path):
    """config.yaml edited by hand: an argument is applied; a different memory, or an edit of the derived
    algo_kwargs (which would be lost), is refused."""
    out = _copy(finished, tmp_path)
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    edited = {**recorded, "hyperparams": {**recorded["hyperparams"], "ent_coef": 0.25}}
    (out / "config.yaml").write_text(yaml.safe_dump({**edited, "cell": "ln"}))
    proc = run("--resume", str(out), "--total-timesteps", "256")
    assert proc.returncode == 2 and "cell='ln' (the model's: 'gal')" in proc.stderr, proc.stderr
    (out / "config.yaml").write_text(yaml.safe_dump({**edited, "algo_kwargs": {**edited["algo_kwargs"], "gamma": 0.5}}))
    proc = run("--resume", str(out), "--total-timesteps", "256")
    assert proc.returncode == 2 and "algo_kwargs gamma=0.5 (the fields give 0.98)" in proc.stderr, proc.stderr
    (out / "config.yaml").write_text(yaml.safe_dump(edited))
    proc = run("--resume", str(out), "--total-timesteps", "256")
    assert proc.returncode == 0, proc.stderr
    assert RecurrentPPO.load(out / "model.zip", device="cpu").ent_coef == 0.25


def test_a_corrupt_last_checkpoint_does_not_block_resume(finished, tmp_path):
    out = _copy(finished, tmp_path)
    (out / "checkpoints" / "last.zip").write_bytes(b"PK\x03\x04 cut short")
    proc = run("--resume", str(out), "--total-timesteps", "256")
    assert proc.returncode == 0, proc.stderr
    assert f"skipping {out / 'checkpoints' / 'last.zip'}" in proc.stdout
    assert "(64 steps to go;" in proc.stdout, "from model.zip (192 steps)"
    # A damaged final model: the newest readable checkpoint instead (last.zip, rewritten at 256), named.
    data = bytearray((out / "model.zip").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "model.zip").write_bytes(bytes(data))
    proc = run("--resume", str(out), "--total-timesteps", "320")
    assert proc.returncode == 0, proc.stderr
    assert f"resuming from {out / 'checkpoints' / 'last.zip'} (256 steps), the newest readable" in proc.stdout


def test_a_model_whose_policy_file_is_cut_short_is_refused_by_name(finished, tmp_path):
    """The outer zip intact (each entry's CRC right) but its policy.pth truncated before it was stored: the
    resume names the file instead of ending in torch's traceback."""
    import zipfile

    out = _copy(finished, tmp_path)
    model = out / "model.zip"
    with zipfile.ZipFile(model) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["policy.pth"] = entries["policy.pth"][: len(entries["policy.pth"]) // 2]
    with zipfile.ZipFile(model, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    proc = run("--resume", str(model), "--total-timesteps", "256")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"--resume {str(model)!r}: not a readable saved model (entry 'policy.pth'" in proc.stderr, proc.stderr


def test_a_second_run_on_a_folder_in_use_stops_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    first = _start(out)
    try:
        _wait_for_checkpoint(first, out)
        proc = run("--resume", str(out), "--total-timesteps", "100000000")
        assert proc.returncode == 2, proc.stderr
        assert f"in use by process {first.pid}" in proc.stderr, proc.stderr
        assert first.poll() is None, "the first run goes on"
    finally:
        first.kill()
    first.wait(timeout=30)
    # The lock of a killed process is stale: the next run takes it over.
    proc = run("--resume", str(out), "--total-timesteps", str(_checkpoint_steps(out) + 32))
    assert proc.returncode == 0, proc.stderr
    assert (out / ".train.lock").read_text().strip() != str(first.pid)


def _checkpoint_steps(out: Path) -> int:
    return json.loads((out / "checkpoints" / "last.json").read_text())["timesteps"]


def test_a_checkpoint_keeps_its_own_statistics(tmp_path):
    """The statistics a resumed run starts from are those saved with the model in one file, even where the
    file beside it belongs to another save (a kill between two renames)."""
    from agents.training import TrainConfig, resolve
    from agents.training.checkpoints import save_atomically
    from agents.training.run import make_training_envs

    config = resolve(TrainConfig(n_envs=2, normalize="obs", hyperparams=dict(n_steps=16, batch_size=32, seq_len=16)))
    env = make_training_envs(config, None)
    model = RecurrentPPO("CellLstmPolicy", env, n_steps=16, batch_size=32, seq_len=16, n_epochs=1,
                         policy_kwargs=dict(lstm_hidden_size=8))  # fmt: skip
    model.learn(32)
    save_atomically(model, tmp_path / "last.zip")
    count = env.obs_rms.count
    stale = tmp_path / "stale.zip"
    model.learn(64, reset_num_timesteps=False)
    save_atomically(model, stale)
    os.replace(tmp_path / "stale_vecnormalize.pkl", tmp_path / "last_vecnormalize.pkl")
    resumed = make_training_envs(config, tmp_path / "last.zip")
    assert resumed.obs_rms.count == count
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name], "no temporary file left"


def _tiny_model():
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    return RecurrentPPO("CellLstmPolicy", env, n_steps=16, batch_size=32, seq_len=16, n_epochs=1,
                        policy_kwargs=dict(lstm_hidden_size=8))  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_in_the_middle_of_a_save_waits_for_it(sig, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while torch writes a checkpoint: the file is finished, then the signal stops the run
    (KeyboardInterrupt, or Stop from the run's SIGTERM handler), instead of breaking torch's zip writer."""
    from agents.training.checkpoints import Stop, raise_stop, save_checkpoint, saved_timesteps

    model = _tiny_model()
    model.learn(32)
    real_save = model.save

    def save_interrupted(path, *args, **kwargs):
        os.kill(os.getpid(), sig)  # arrives while the save runs
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(model, "save", save_interrupted)
    # The run's handlers (agents.training.run), whatever this process had (a test worker ignores SIGINT).
    previous = signal.signal(signal.SIGTERM, raise_stop), signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt if sig == signal.SIGINT else Stop):
            save_checkpoint(model, tmp_path)
        restored = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert saved_timesteps(tmp_path / "checkpoints" / "last.zip") == model.num_timesteps
    assert saved_timesteps(tmp_path / "checkpoints" / f"model_{model.num_timesteps}_steps.zip") == model.num_timesteps
    assert _checkpoint_steps(tmp_path) == model.num_timesteps
    assert restored == (raise_stop, signal.default_int_handler), "the handlers are restored"


def test_a_signal_held_during_a_save_keeps_its_previous_meaning():
    """An ignored signal stays ignored after the block; a nested block holds to the outermost; handlers return."""
    from agents.training.checkpoints import stop_signals_deferred

    seen = []
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, lambda *a: seen.append(a[0]))
    try:
        with stop_signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # ignored before: dropped
        with stop_signals_deferred():
            with stop_signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
            assert seen == [], "held until the outermost block ends"
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


@pytest.mark.parametrize("env_id, policy", [("CueDict-v0", "MultiInputCellLstmPolicy"),
                                            ("CueImage-v0", "CnnCellLstmPolicy")])  # fmt: skip
def test_dict_and_image_observations_train_evaluate_resume_and_export(env_id, policy, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    common = ["--env-package", "cue_env_ids", "--no-tensorboard"]
    proc = run("--env", env_id, "--total-timesteps", "64", "--eval-freq", "32", "--out", str(out), *TINY, *common,
               env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith(f"eval {env_id} ppo/lstm: mean_return=")
    assert type(RecurrentPPO.load(out / "model.zip", device="cpu").policy).__name__ == policy
    proc = run("--resume", str(out), "--total-timesteps", "96", *common, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "eval.json").read_text())["timesteps"] >= 96
    export = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), str(out), "--format", "torchscript"],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert (out / "model.pt").is_file()


def test_the_last_line_has_the_digits_a_return_needs_and_the_success_rate(tmp_path):
    from agents.training import TrainConfig, resolve
    from agents.training.cli import summary_line

    record = dict(mean_return=0.25, std_return=0.433, success_rate=0.25, episodes=20, timesteps=64, wall_time_s=3.0)
    line = summary_line(resolve(TrainConfig(env="Recall-L20-v0")), record, tmp_path)
    assert "mean_return=0.250 +- 0.433, success_rate=0.25 over 20 episodes" in line, line
    record = dict(record, mean_return=500.0, std_return=0.0, success_rate=None)
    line = summary_line(resolve(TrainConfig(env="CartPole-v1")), record, tmp_path)
    assert "mean_return=500.0 +- 0.000 over 20 episodes" in line and "success_rate" not in line, line
