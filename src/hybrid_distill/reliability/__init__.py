"""Reliability: exact resume, preemption, non-finite guard, atomic checkpoints and unique run directories (the train
loader that resumes mid-epoch is `data/resumable_loader.py`).

- `callbacks`: RNG state in checkpoints, checkpoint-and-stop on SIGTERM/SIGUSR1/SIGUSR2/SIGINT, nan/inf guard (and the
  last finite checkpoint), preemption drill.
- `checkpoints`: atomic checkpoint writes (CheckpointIO plugin), which checkpoint a stage resumes from (the newest
  readable one by step), its checks, and loading only its weights (weights_from=).
- `rundir`: a fresh run directory per run (`${unique_dir:...}` resolver), `resume=<run dir>`, and the lock that lets one
  process at a time work in a run directory.
- `csv_logger`: a CSV logger that appends to a resumed stage's metrics.csv instead of deleting it (cut back to the
  resumed step).
- `recorded_config`: a run continued in its directory keeps the config it recorded (allowed changes go to a new file,
  once the resume has passed its checks); the knobs a restored checkpoint overrides (for a warning).
- `signals`: stop signals noted where there is no training loop to checkpoint (seqkd's generation).
"""
