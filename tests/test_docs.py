"""The documentation is executable and builds: every command and code block of the README and of the user guide
(docs/guide) runs, with a tiny budget substituted, and the site builds with warnings as errors.

The Quick start's installs are what CI itself runs; its training command runs here at a tiny budget. The
Ray section needs a cluster and is left to tests/test_sweep_ray.py.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
SKIP_SECTIONS = ("Sweeps on a Ray cluster",)
TINY_TRAIN = ["--n-envs", "2", "--eval-episodes", "1", "--no-tensorboard", "--hidden-size", "8"]


def blocks(language: str) -> list[tuple[str, str]]:
    """``(section, code)`` of every fenced block in ``language`` of the pages, outside the skipped sections."""
    found = []
    for page in PAGES:
        for section in re.split(r"\n## ", page.read_text()):
            title = section.split("\n", 1)[0]
            if title.startswith(SKIP_SECTIONS):
                continue
            found += [(title, code) for code in re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)]
    return found


def commands() -> list[str]:
    """Every ``python scripts/...`` command of the bash blocks (the Quick start's after its installs)."""
    found = []
    for _, code in blocks("bash"):
        for line in code.strip().splitlines():
            for part in line.split("&&"):
                if part.strip().startswith("python scripts/"):
                    found.append(part.strip())
    return found


def tiny(command: str) -> list[str]:
    """The command with a tiny budget: 64 steps (more than a resumed run has), 2 envs, 1 evaluation episode, and
    an off-policy run's learning starting inside it."""
    args = shlex.split(command)[1:]
    if "--total-timesteps" in args:
        i = args.index("--total-timesteps")
        args[i + 1] = "192" if "--resume" in args else "64"
    elif args[0] == "scripts/train.py":
        args += ["--total-timesteps", "64"]
    if args[0] == "scripts/train.py" and "--algo" in args and args[args.index("--algo") + 1].startswith(("dqn", "sac")):
        if "--hyperparams" in args:  # learning starts inside the tiny budget
            args.insert(args.index("--hyperparams") + 1, "learning_starts=16")
        else:
            args += ["--hyperparams", "learning_starts=16"]
    if args[0] == "scripts/tune.py":  # one trial of one rollout (the space's largest n_steps x 8 envs)
        args += ["--trials", "1", "--n-timesteps", "1024", "--eval-episodes", "1", "--no-tensorboard"]
    return [sys.executable, *args, *(TINY_TRAIN if args[0] == "scripts/train.py" else [])]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    argv = [argv[0], str(ROOT / argv[1]), *argv[2:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=cwd)  # a hang guard, not a speed bound


def test_the_pages_have_commands_and_code():
    assert len(commands()) >= 5 and len(blocks("python")) >= 5


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    """``mkdocs build --strict``: every page in the navigation, every link and anchor resolved, every docstring of
    the API reference parsed."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's notice about MkDocs 2 is not about this site
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert "Quick start" in home and 'href="guide/cells/"' in home  # the README, its links made the site's
    assert "RecurrentSAC" in (tmp_path / "site" / "api" / "agents" / "index.html").read_text()


@pytest.mark.parametrize("command", commands())
def test_documented_command_runs(command, tmp_path):
    argv = tiny(command)
    if "--resume" in argv:  # the folder the example resumes: a finished run of 64 steps
        run_dir = argv[argv.index("--resume") + 1]
        made = run([sys.executable, "scripts/train.py", "--out", run_dir, "--total-timesteps", "64", *TINY_TRAIN],
                   tmp_path)  # fmt: skip
        assert made.returncode == 0, made.stderr
    proc = run(argv, tmp_path)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    if argv[1] == "scripts/train.py":
        assert proc.stdout.strip().splitlines()[-1].startswith("eval "), proc.stdout


@pytest.mark.parametrize("code", [code for _, code in blocks("python")], ids=lambda c: c.split("\n", 1)[0][:40])
def test_documented_python_block_runs(code, tmp_path):
    code = re.sub(r"\.learn\(\s*[\d_]+", ".learn(256", code)  # a tiny budget for training examples
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread per test process (two run side by side)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, f"{code}\n{proc.stderr[-3000:]}"


@pytest.mark.learning
def test_the_masked_recall_block_returns_what_it_says():
    """The invalid-action masking block, at its own budget (8192 steps, seeded): it says "return 1"."""
    (code,) = [code for title, code in blocks("python") if "MaskedRecall-v0" in code]
    assert "return 1" in code
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core, as the block's timing says and beside other tests
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) == 1.0, proc.stdout
