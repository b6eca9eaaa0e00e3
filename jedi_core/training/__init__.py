"""Training a run: the epoch loop, the real-environment loop, and the run folder with its checkpoints.

* :mod:`~jedi_core.training.loop`: :class:`Trainer`, the epoch loop of the paper's Algorithm 1;
* :mod:`~jedi_core.training.harness`: the run around it (lock, resume, stop signals, progress, logs);
* :mod:`~jedi_core.training.collect`: every loop over the real environment (random collection, collection
  with the agent, evaluation);
* :mod:`~jedi_core.training.run_dir`: the run folder's name and files;
* :mod:`~jedi_core.training.checkpoint`: checkpoints (save, resume, compatibility) and exported agent files.

Nothing here imports :mod:`jedi_core.analysis` (so training never loads matplotlib).
"""
