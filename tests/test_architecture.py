"""The map is tested: docs/ARCHITECTURE.md names every module and only modules that exist, and the
import graph keeps the layering the map states (no cycle; libraries import no program)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rl_lstm", "agents", "envs")
MAP = ROOT / "docs" / "ARCHITECTURE.md"
#: Program packages: command-line harnesses and benchmarks. Library modules never import them.
PROGRAMS = ("agents.training", "agents.sweep", "agents.tuning", "rl_lstm.bench")


def _modules() -> dict[str, Path]:
    """Every Python module of the three packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its text: at the top, inside functions (a
    late import hides a dependency, it does not remove it) and for type checking alone."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    # ``import a.b.c`` depends on a.b.c; a name imported from a package is the package or its module.
    return {t for t in targets if t in known and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_map_names_every_module():
    text = MAP.read_text()
    named = set(re.findall(r"`((?:rl_lstm|agents|envs|scripts)/[\w/.-]+\.(?:py|cpp|h|inc|yml|yaml))`", text))
    present = {str(p.relative_to(ROOT)) for p in _modules().values()}
    present |= {str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.py")}
    present |= {str(p.relative_to(ROOT)) for p in (ROOT / "rl_lstm" / "csrc").glob("*.*")}
    missing = sorted(p for p in present if p not in named and not p.endswith("__init__.py"))
    assert not missing, f"docs/ARCHITECTURE.md does not name these modules: {missing}"
    gone = sorted(p for p in named if not (ROOT / p).exists() and "<" not in p)
    assert not gone, f"docs/ARCHITECTURE.md names files that do not exist: {gone}"


def test_map_names_every_console_script():
    setup = (ROOT / "setup.cfg").read_text()
    scripts = re.findall(r"^\s*(rl-lstm-[\w-]+)\s*=", setup, flags=re.M)
    text = MAP.read_text()
    assert scripts and all(f"`{s}`" in text for s in scripts), [s for s in scripts if f"`{s}`" not in text]


def test_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def walk(node, stack):
        state[node] = 1
        for target in sorted(graph[node]):
            # A package's __init__ importing its own submodules is how packages re-export.
            if target.startswith(node + "."):
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target] if target in stack else [node, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if not state.get(target):
                walk(target, stack + [target])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            walk(node, [node])


def _layer_violations(may_not_import) -> list[str]:
    bad = []
    for name, targets in _graph().items():
        for target in targets:
            if may_not_import(name, target):
                bad.append(f"{name} imports {target}")
    return sorted(bad)


def _in(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_cells_know_nothing_of_the_agents_or_the_tasks():
    assert not _layer_violations(lambda m, t: _in(m, ["rl_lstm"]) and _in(t, ["agents", "envs"]))


def test_tasks_know_nothing_of_the_learners():
    assert not _layer_violations(lambda m, t: _in(m, ["envs"]) and _in(t, ["agents", "rl_lstm"]))


def test_libraries_import_no_program():
    def library(m):
        return not _in(m, PROGRAMS)

    assert not _layer_violations(lambda m, t: library(m) and _in(t, PROGRAMS))


# ---------------------------------------------------------------------------- the recipes, done once


def _choices(parser, flag: str) -> list[str]:
    return next(a.choices for a in parser._actions if flag in a.option_strings)


def test_no_module_imports_another_modules_private_name():
    """A name another module needs is public; ``_name`` stays inside its module."""
    modules = _modules()
    found = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                found += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not found, found


def test_no_module_is_over_450_lines():
    """A module a reader can hold in view: past 450 lines it holds more than one concept."""
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > 450}
    assert not long, long


def test_docstrings_have_one_style():
    """Fields are SB3's ``:param name:`` (the API reference reads them so); no Google or NumPy sections."""
    other = re.compile(
        r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Attributes)( of [\w ]+)?:\s*$"
        r"|^\s*(Args|Arguments|Returns) of [\w ]+:|^\s*-{3,}\s*$"
    )
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                found += [f"{name}: {line.strip()}" for line in doc.splitlines() if other.match(line)]
    assert not found, found


def test_recipe_a_cell_gets_the_cli_the_agents_and_the_benchmark_rows(monkeypatch):
    import torch

    from agents import RecurrentPPO
    from agents.training.cli import build_parser
    from rl_lstm import CELLS, LSTM, make_cell
    from rl_lstm.bench.speed_spec import Settings

    class ToyLSTM(LSTM):
        """A cell added by the recipe: a subclass stating its class facts, registered by name."""

        method = "gal"

    monkeypatch.setitem(CELLS, "toy", ToyLSTM)
    assert "toy" in _choices(build_parser(), "--cell")
    assert "toy" in Settings().cells
    out, _ = make_cell("toy", 3, 4)(torch.zeros(2, 1, 3))
    assert out.shape == (2, 1, 4)
    model = RecurrentPPO("CellLstmPolicy", "CartPole-v1", n_steps=8, batch_size=8, n_epochs=1,
                         policy_kwargs=dict(cell="toy", lstm_hidden_size=4))  # fmt: skip
    model.learn(16)
    assert isinstance(model.policy.lstm_actor.layers[0], ToyLSTM)


def test_recipe_an_environment_gets_the_cli_and_the_checkers(monkeypatch):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import envs
    from agents.training import TrainConfig, resolve
    from envs.repeat_previous import RepeatPrevious

    env_id = "ToyRepeatPrevious-v0"
    gym.register(env_id, entry_point="envs.repeat_previous:RepeatPrevious", max_episode_steps=16)
    monkeypatch.setitem(envs.ENV_INFO, env_id, envs.EnvInfo(max_return=1.0, memoryless_bound=0.25, threshold=0.9))
    try:
        env = gym.make(env_id)
        check_env(env.unwrapped)
        assert isinstance(env.unwrapped, RepeatPrevious)
        resolve(TrainConfig(env=env_id, total_timesteps=64))
    finally:
        gym.registry.pop(env_id, None)


def test_recipe_an_algorithm_gets_the_cli_choice_and_its_hyperparameters(monkeypatch):
    from agents import RecurrentPPO
    from agents.training import ALGOS, TrainConfig, resolve
    from agents.training.algos import AlgoSpec
    from agents.training.cli import build_parser

    monkeypatch.setitem(ALGOS, "toy-ppo", AlgoSpec(RecurrentPPO, "CellLstmPolicy", "toy", memory="cell",
                                                   hyperparams="ppo"))  # fmt: skip
    assert "toy-ppo" in _choices(build_parser(), "--algo")
    config = TrainConfig(algo="toy-ppo", env="CartPole-v1", total_timesteps=64)
    assert resolve(config).entry == "CartPole-v1"


def test_recipe_every_benchmark_has_its_entry_point_and_console_script():
    setup = (ROOT / "setup.cfg").read_text()
    targets = dict(re.findall(r"^\s*(rl-lstm-[\w-]+)\s*=\s*([\w.]+):main", setup, flags=re.M))
    for path in sorted((ROOT / "scripts").glob("*.py")):
        modules = re.findall(r"^from ([\w.]+) import main$", path.read_text(), flags=re.M)
        assert len(modules) == 1, f"{path.name}: expected one 'from <module> import main'"
        assert modules[0] in targets.values(), f"{path.name}: {modules[0]}.main has no console script in setup.cfg"
