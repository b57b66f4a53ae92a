"""Reliability: exact resume, preemption, non-finite guard, atomic checkpoints and unique run directories (the train
loader that resumes mid-epoch is `data/resumable_loader.py`).

- `callbacks`: RNG state in checkpoints, checkpoint-and-stop on SIGTERM/SIGUSR1/SIGUSR2, nan/inf guard, preemption drill.
- `checkpoints`: atomic checkpoint writes (CheckpointIO plugin), which checkpoint a stage resumes from, and its checks.
- `rundir`: a fresh run directory per run (`${unique_dir:...}` resolver) and `resume=<run dir>`.
- `csv_logger`: a CSV logger that appends to a resumed stage's metrics.csv instead of deleting it.
"""
