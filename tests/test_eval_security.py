"""eval.py on a run directory from someone else: nothing its config names is instantiated (the student comes from its
config.json or this package's builders, data from this package's datamodules, a teacher's pretraining from this
package's trainer and callbacks), and a teacher whose pickled weights hold code is one clear line."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from helpers import QUICK_SUITE, compose_eval
from hybrid_distill import cli
from hybrid_distill.errors import UserError
from hybrid_distill.stages.eval import evaluate_from_config


def payload(marker: Path) -> dict:
    """Instantiating this creates `marker`: a stand-in for any code a crafted config could run."""
    return {"_target_": "os.makedirs", "name": str(marker)}


def crafted_member(tiny_sweep: Path, tmp_path: Path, edit) -> Path:
    """A copy of a real sweep member whose saved .hydra/config.yaml `edit` changes."""
    run = tmp_path / "run"
    shutil.copytree(tiny_sweep / "0", run)
    config = run / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(config)
    edit(cfg)
    OmegaConf.save(cfg, config)
    return run


def test_a_run_config_carrying_payloads_is_evaluated_without_running_them(tiny_sweep, cache_dir, tmp_path):
    cache = tmp_path / "cache"  # no teacher cached here: the evaluation pretrains the run's teacher again
    for part in ("tokenizers", "datasets"):
        shutil.copytree(cache_dir / part, cache / part)

    def edit(cfg):
        cfg.callbacks.payload = payload(tmp_path / "pwned-callback")
        # past the old allow-list (a getter was checked by its `path` only)
        cfg.callbacks.getter = {"_target_": "hydra.utils.get_method", "_args_": ["os.system"]}
        cfg.trainer.plugins.append(payload(tmp_path / "pwned-plugin"))
        cfg.trainer.profiler = payload(tmp_path / "pwned-profiler")
        cfg.payload = payload(tmp_path / "pwned-top")
        cfg.paths.cache_dir = str(cache)
        cfg.model.recipe.pretrain_teacher.max_steps = 2  # a quick pretraining

    run = crafted_member(tiny_sweep, tmp_path, edit)
    summary = evaluate_from_config(compose_eval(tmp_path / "out", [f"ckpt={run}", "logger=none", *QUICK_SUITE]))
    assert Path(summary["eval_json"]).parent == run and math.isfinite(summary["quality/kl"])
    assert len(list((cache / "teachers").iterdir())) == 1  # pretrained, with this package's trainer and callbacks
    assert list(tmp_path.glob("pwned*")) == []


@pytest.mark.parametrize(
    "where, data, message",
    [
        ("target", lambda m: payload(m), r"data._target_='os.makedirs' is not a datamodule of hybrid_distill"),
        (
            "value",
            lambda m: {"_target_": "hybrid_distill.data.datamodules.TextDataModule", "chat_source": payload(m)},
            r"data.chat_source._target_: a data config holds plain settings of .*TextDataModule",
        ),
    ],
)
def test_a_data_config_naming_code_is_one_clear_error(tiny_sweep, tmp_path, where, data, message):
    marker = tmp_path / "pwned"
    run = crafted_member(tiny_sweep, tmp_path, lambda cfg: setattr(cfg, "data", data(marker)))
    with pytest.raises(UserError, match=message):
        evaluate_from_config(compose_eval(tmp_path / "out", [f"ckpt={run}", "logger=none", *QUICK_SUITE]))
    assert not marker.exists()


class Payload:
    """Unpickling this creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_teacher_with_code_in_its_pickled_weights_is_one_line(tiny_sweep, tiny_teacher, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    tiny_teacher[0].config.save_pretrained(teacher)
    tiny_teacher[1].save_pretrained(teacher)
    marker = tmp_path / "pwned"
    torch.save({"model.embed_tokens.weight": Payload(marker)}, teacher / "pytorch_model.bin")
    cfg = compose_eval(
        tmp_path / "out",
        [f"ckpt={tiny_sweep / '0' / 'student'}", f"suite.teacher={teacher}", "logger=none", *QUICK_SUITE],
    )
    with pytest.raises(SystemExit) as stopped:
        cli.exit_on_user_error(cli.evaluate, cfg)
    output = capsys.readouterr().out
    assert stopped.value.code == 2 and not marker.exists()
    (line,) = [line for line in output.splitlines() if line.strip()]
    assert line.startswith(f"error: suite.teacher '{teacher}': the pickled weights") and "safetensors" in line
