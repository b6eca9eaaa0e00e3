"""jedi_core.training.run_dir: the metrics log is read whole lines only and cut back to a checkpoint."""

import json
import os

import pytest

from jedi_core.training.run_dir import (
    METRICS_FILE,
    RunDirInUse,
    append_metrics,
    lock_run_dir,
    read_metrics,
    truncate_metrics,
)


def test_a_torn_last_line_is_left_out_and_a_resume_cuts_the_log_back_to_the_checkpoint(tmp_path):
    assert read_metrics(tmp_path) == [] and truncate_metrics(tmp_path, 3) == 0
    for epoch in range(1, 6):
        append_metrics(tmp_path, {"epoch": epoch, "loss": 1.0 / epoch})
    with open(tmp_path / METRICS_FILE, "a") as handle:
        handle.write('{"epoch": 6, "lo')  # a kill in the middle of a write
    assert [record["epoch"] for record in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]

    assert truncate_metrics(tmp_path, 3) == 3  # epochs 4 and 5, and the torn line
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    append_metrics(tmp_path, {"epoch": 4})  # the next record starts on a line of its own
    assert [record["epoch"] for record in read_metrics(tmp_path)] == [1, 2, 3, 4]
    assert truncate_metrics(tmp_path, 4) == 0


def test_one_training_process_per_run_folder(tmp_path):
    with lock_run_dir(tmp_path):
        with pytest.raises(RunDirInUse, match=f"in use by another training process \\(pid {os.getpid()}\\)"):
            with lock_run_dir(tmp_path):
                pass
    with lock_run_dir(tmp_path):  # released when the first one stopped; the lock file left behind is harmless
        pass
