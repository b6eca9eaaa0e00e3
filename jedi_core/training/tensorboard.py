"""A TensorBoard copy of ``metrics.jsonl`` (``logging.tensorboard=true``), for watching runs where researchers
look: ``tensorboard --logdir runs/`` shows every run under its folder's name.

``metrics.jsonl`` stays the record. Each line, as it is appended, is written as one scalar per number, at the
line's epoch; not at its env steps, because the training-only epochs at the end of a run all have the same
env-step count, and TensorBoard shows one point per step.

A resumed run writes only the lines it appends. The epochs past its checkpoint that the stopped process had
logged are trained and logged again; the writer opens with ``purge_step`` at the first of them, which makes
TensorBoard drop the stopped process's points from that epoch on. A run that turns the option on when it
resumes writes the lines it already has first.
"""

from __future__ import annotations

from pathlib import Path

from jedi_core.training.run_dir import TENSORBOARD_DIR, read_metrics

#: The metrics.jsonl key used as TensorBoard's step.
STEP_KEY = "epoch"


def check_tensorboard() -> None:
    """Refuse to start a run whose option asks for TensorBoard when it is not installed (not at its first
    epoch's end, minutes or hours in)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (it needs the tensorboard package)
    except ImportError:
        raise RuntimeError("logging.tensorboard=true needs TensorBoard, which is not installed: pip install "
                           "'jedi-core[tensorboard]' (or set logging.tensorboard=false)") from None


class TensorBoardMirror:
    """Writes metrics.jsonl records as TensorBoard scalars into ``RUN_DIR/tensorboard/``."""

    def __init__(self, run_dir: str | Path, next_epoch: int):
        """``next_epoch``: the first epoch this process will log (1 for a new run)."""
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(run_dir) / TENSORBOARD_DIR
        earlier = any(log_dir.glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(str(log_dir), purge_step=next_epoch if earlier else None)
        if not earlier:
            for record in read_metrics(run_dir):
                self.write(record)

    def write(self, record: dict) -> None:
        """One metrics.jsonl record: each number in it but its epoch, at its epoch; flushed at once, so a kill
        loses no point that metrics.jsonl holds."""
        for key, value in record.items():
            if key != STEP_KEY and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, record[STEP_KEY])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
