"""The export command: a run folder's (or a model .zip's) trained recurrent policy written as an ONNX or
TorchScript step function (obs, h, c, episode_start) -> (action, h_out, c_out), with the run's
observation normalisation baked in. The step itself is the library's :mod:`agents.export`."""

from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path

from stable_baselines3.common.vec_env import VecNormalize

from agents.export import FORMATS, PolicyStep, RecurrentPolicy, describe, export, policy_from_zip
from agents.training.checkpoints import STATS_ENTRY, vecnormalize_path


def resolve_model(path: str | Path) -> Path:
    """The model file of ``path``: a run folder's ``model.zip``, or a model ``.zip`` itself."""
    path = Path(path)
    model = path / "model.zip" if path.is_dir() else path
    if not model.is_file():
        raise ValueError(f"{str(path)!r}: expected a run folder holding model.zip, or a model .zip file")
    return model


def saved_statistics(model: Path) -> VecNormalize | None:
    """The VecNormalize statistics saved with ``model``: those inside its zip (written with it in one
    rename), else the file beside it (``<stem>_vecnormalize.pkl``, models saved before); None if none."""
    with zipfile.ZipFile(model) as archive:
        if STATS_ENTRY in archive.namelist():
            return pickle.loads(archive.read(STATS_ENTRY))
    beside = vecnormalize_path(model)
    if not beside.is_file():
        return None
    with beside.open("rb") as f:
        return pickle.load(f)


def load_policy(path: str | Path) -> tuple[RecurrentPolicy, VecNormalize | None]:
    """The policy saved in a run folder or model ``.zip`` (by any of our recurrent algorithms, PPO, A2C, DQN
    and SAC, or sb3-contrib's RecurrentPPO) and the VecNormalize statistics saved with it, or None."""
    model = resolve_model(path)
    policy = policy_from_zip(model)
    return policy, saved_statistics(model)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Export a trained recurrent policy as a step function (obs, h, c, episode_start) -> "
        "(action, h_out, c_out), observation normalisation included.",
    )
    p.add_argument("model", metavar="RUN_DIR_OR_MODEL", help="A run folder (its model.zip) or a model .zip.")
    p.add_argument("--format", choices=list(FORMATS), default="onnx", help="Output format (default: onnx).")
    p.add_argument("--out", type=Path, default=None,
                   help="Output file (default: beside the model, model.onnx or model.pt).")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        policy, vec_normalize = load_policy(args.model)
        out = args.out or resolve_model(args.model).with_suffix(FORMATS[args.format])
        step = PolicyStep(policy, vec_normalize)
        export(step, out, args.format)
    except (ValueError, zipfile.BadZipFile) as e:
        parser.error(str(e))  # exit code 2
    normalized = "observation normalisation baked in" if any(step.normalized) else "no observation normalisation"
    print(f"wrote {out} ({args.format}, {normalized})\n{describe(step)}")
    return 0
