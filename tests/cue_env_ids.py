"""Gymnasium ids for the cue tasks of ``cue_envs`` (an image and a Dict observation), so that the command
line can train them: ``--env-package cue_env_ids`` with ``tests/`` on the path."""

import gymnasium as gym

for name, kind in (("CueImage-v0", "image"), ("CueDict-v0", "dict")):
    if name not in gym.registry:
        gym.register(name, entry_point="cue_envs:CueEnv", kwargs=dict(kind=kind))
