"""What a submitit job (hydra/launcher=submitit_slurm | submitit_local) asks for, derived from the trainer config, so
that a `trainer=gpu` job requests one GPU and a `trainer=ddp` job one task per GPU: `${job_gpus:...}` and
`${job_tasks:...}` in conf/hydra/launcher/*.yaml."""

from __future__ import annotations

from omegaconf import OmegaConf


def job_gpus(accelerator: str, devices, node_gpus: int) -> int:
    """GPUs per node: 0 on CPU, the trainer's `devices` when it is a number (or as many as the GPU ids it lists),
    all `node_gpus` for `auto` / -1."""
    if accelerator not in ("gpu", "cuda"):
        return 0
    if isinstance(devices, int) and devices > 0:
        return devices
    ids = [d for d in str(devices).strip("[]").split(",") if d.strip()]
    if len(ids) > 1 or (ids and ids[0].strip().isdigit() and str(devices).startswith("[")):  # GPU ids: "0,1", [0, 1]
        return len(ids)
    if str(devices) in ("auto", "-1"):
        return int(node_gpus)
    raise ValueError(
        f"trainer.devices={devices!r}: a Slurm job needs a GPU count (a number, or auto = hydra.launcher.node_gpus)"
    )


def job_tasks(accelerator: str, devices, node_gpus: int) -> int:
    """Tasks per node: one process per GPU (Lightning's DDP/FSDP under srun), one on CPU."""
    return max(job_gpus(accelerator, devices, node_gpus), 1)


def register_launch_resolvers() -> None:
    for name, fn in (("job_gpus", job_gpus), ("job_tasks", job_tasks)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
