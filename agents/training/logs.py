"""A run's logs: SB3's logger writing ``progress.csv`` and ``log.txt`` so that a resumed run appends its
rows after the earlier ones, and the progress lines printed where no progress bar is shown."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, KVWriter, Logger, make_output_format


class AppendingCSVOutputFormat(CSVOutputFormat):
    """SB3's CSV log, opened after the rows already in the file: its header gives the columns, and a column
    that appears later is added to every row as SB3 does within one run."""

    def __init__(self, filename: str) -> None:
        path = Path(filename)
        if not path.is_file() or path.stat().st_size == 0:
            super().__init__(filename)
            return
        self.file = open(filename, "r+")  # noqa: SIM115 (closed by Logger.close)
        self.keys = self.file.readline().rstrip("\n").split(",")
        self.separator = ","
        self.quotechar = '"'
        self.file.seek(0, 2)
        if self.file.tell() and not path.read_text().endswith("\n"):  # a row cut short by a kill
            self.file.write("\n")


class AppendingHumanOutputFormat(HumanOutputFormat):
    """SB3's text log, appended to."""

    def __init__(self, filename: str) -> None:
        super().__init__(open(filename, "a"))  # noqa: SIM115 (closed by Logger.close: own_file below)
        self.own_file = True


def run_logger(run_dir: Path, tensorboard: bool) -> Logger:
    """SB3's ``configure(run_dir, ["csv", "log"(, "tensorboard")])``, appending to the files a resumed run
    already has (TensorBoard starts a new events file, which TensorBoard reads as one run)."""
    formats: list[KVWriter] = [
        AppendingCSVOutputFormat(str(run_dir / "progress.csv")),
        AppendingHumanOutputFormat(str(run_dir / "log.txt")),
    ]
    if tensorboard:
        formats.append(make_output_format("tensorboard", str(run_dir)))
    return Logger(str(run_dir), formats)


class ProgressLines(BaseCallback):
    """One line per ``every`` environment steps (at the end of the rollout that crosses it): steps done,
    the mean training return of the last episodes and the rate, for output that is not a terminal (a
    log file, CI), where a progress bar shows nothing until the end."""

    def __init__(self, total: int, every: int, log: Callable[[str], None]) -> None:
        super().__init__()
        self.total, self.every, self.log = total, every, log
        self._next = 0
        self._start = 0.0
        self._start_steps = 0

    def _on_training_start(self) -> None:
        self._start, self._start_steps = time.perf_counter(), self.num_timesteps
        self._next = self.num_timesteps + self.every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps < self._next:
            return
        self._next = (self.num_timesteps // self.every + 1) * self.every
        episodes = self.model.ep_info_buffer
        returns = f"mean return {np.mean([e['r'] for e in episodes]):.1f}" if episodes else "no episode ended yet"
        elapsed = time.perf_counter() - self._start
        rate = (self.num_timesteps - self._start_steps) / elapsed if elapsed > 0 else 0.0
        self.log(f"{self.num_timesteps}/{self.total} steps: {returns} (last {len(episodes)}), {rate:.0f} steps/s")
