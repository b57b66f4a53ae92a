"""Reliability: exact resume, preemption, non-finite guard, atomic checkpoints and unique run directories (the train
loader that resumes mid-epoch is `data/resumable_loader.py`).

- `callbacks`: RNG state in checkpoints, checkpoint-and-stop on SIGTERM/SIGUSR1/SIGUSR2/SIGINT, nan/inf guard (and the
  last finite checkpoint), preemption drill.
- `checkpoints`: atomic checkpoint writes (CheckpointIO plugin), which checkpoint a stage resumes from, and its checks.
- `rundir`: a fresh run directory per run (`${unique_dir:...}` resolver) and `resume=<run dir>`.
- `csv_logger`: a CSV logger that appends to a resumed stage's metrics.csv instead of deleting it (cut back to the
  resumed step).
- `recorded_config`: a run continued in its directory keeps the config it recorded (allowed changes go to a new file).
- `signals`: stop signals noted where there is no training loop to checkpoint (seqkd's generation).
"""
