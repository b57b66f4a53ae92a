"""Bad input ends a run with one clear sentence naming the key, file or row, never a bare traceback.

Covered elsewhere and not repeated here: mamba_ratio outside [0, 1] on the command line (test_train_e2e), real teacher
presets without weights, mamba_ssm on CPU, a preference loss under distill (test_config_groups), bad patterns and
ratios in allocation (test_models_allocation), teacher directories without config.json or of another shape
(test_teacher_loading), bad chat/preference rows and missing columns in the loaders (test_data_loaders), over-long
rows counted and skipped (test_data_tokenize), mismatched or truncated student files (test_models_checkpoint).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.errors import UserError
from hybrid_distill.models import build_student
from hybrid_distill.models.teacher import build_random_teacher
from hybrid_distill.reliability.checkpoints import last_checkpoint
from helpers import train_cli

QUIET = ["logger=none", "trainer.max_steps=2"]


def fails_with(tmp_path: Path, overrides: list[str], match: str) -> None:
    with pytest.raises(UserError, match=match):
        run(compose_config(tmp_path, [*QUIET, *overrides]))


def one_error_line(proc) -> str:
    """The CLI's contract for bad input: exit status 2, one line starting `error:`, no traceback."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "error:" in line]
    assert line.startswith("error: ")
    return line


# ----------------------------------------------------------------------------------------- config values


def test_hydra_composition_errors_are_short_and_name_the_option(tmp_path):
    for override, named in (("model=foo", "Could not find 'model/foo'"), ("foo=1", "Could not override 'foo'")):
        proc = train_cli([override], tmp_path, tmp_path)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1 and named in output and "Traceback" not in output
        assert len(output.strip().splitlines()) < 20


@pytest.mark.parametrize(
    "override,match",
    [
        (
            "student.pattern=MAM",
            "mamba_ratio / student.pattern: pattern 'MAM' has 3 letters but the model has 4 layers",
        ),
        ("mamba_ratio=half", "mamba_ratio='half' must be a number"),  # config_checks, before the teacher loads
        ("scan_backend=cuda_magic", "scan_backend=cuda_magic: unknown scan_backend 'cuda_magic'"),
        ("student.mixer=mamba3", "student: mixer must be one of mamba1, mamba2"),
        ("student.trainable=everything", "student: .*must be one of mamba, mamba_mlp, all; got 'everything'"),
        ("loss.divergence=wasserstein", "loss.divergence='wasserstein'; choose one of kl"),
        ("logger.name=tensorboard", "logger.name='tensorboard'; choose wandb, csv or none"),
        ("callbacks.nonfinite.action=ignore", "callbacks.nonfinite.action='ignore'; choose one of stop, skip"),
        ("callbacks.preemption.signals=[SIGFOO]", "callbacks.preemption.signals: unknown signal 'SIGFOO'"),
    ],
)
def test_unknown_or_out_of_range_config_values_are_named(tiny_teacher, tmp_path, override, match):
    fails_with(tmp_path, [override], match)


def test_pipeline_is_resumed_with_resume_not_ckpt_path(tmp_path):
    fails_with(
        tmp_path, ["stage=pipeline", "ckpt_path=last"], "stage=pipeline resumes by itself: continue it with resume="
    )


def test_missing_teacher_path_on_the_command_line(tmp_path):
    line = one_error_line(train_cli(["model.path=/nonexistent/llama", "logger=none"], tmp_path, tmp_path))
    assert "model.path '/nonexistent/llama' does not exist" in line


def test_resume_of_a_directory_without_a_run(tmp_path):
    fails_with(tmp_path, [f"resume={tmp_path}"], f"resume={tmp_path}: no earlier run there")


# ----------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def distill_run(tiny_teacher, tmp_path_factory) -> Path:
    """A finished 2-step distill run with a real Lightning checkpoint and a saved student."""
    out = tmp_path_factory.mktemp("distill_run")
    run(compose_config(out, [*QUIET, "callbacks.model_checkpoint.every_n_train_steps=1"]))
    return out


def test_lightning_checkpoint_of_another_architecture(distill_run, tmp_path):
    ckpt = last_checkpoint(distill_run / "distill")
    fails_with(
        tmp_path,
        [f"ckpt_path={ckpt}", "mamba_ratio=0.75"],
        rf"checkpoint {ckpt} is not a checkpoint of this model \(missing student.layers.1.mixer.A_log, .*; "
        r"unexpected student.layers.1.mixer.k_proj.weight, .*\): it comes from another stage or architecture",
    )


def test_lightning_checkpoint_of_another_stage(distill_run, tmp_path):
    ckpt = last_checkpoint(distill_run / "distill")
    fails_with(
        tmp_path,
        ["stage=dpo", f"stage.init_from={distill_run / 'student'}", f"ckpt_path={ckpt}"],
        r"is not a checkpoint of this model \(missing policy\..*unexpected student\.",
    )


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupted_lightning_checkpoint(distill_run, tmp_path, damage):
    ckpt = tmp_path / "last.ckpt"
    data = last_checkpoint(distill_run / "distill").read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    fails_with(tmp_path, [f"ckpt_path={ckpt}"], f"checkpoint {ckpt} cannot be read .*: it is truncated or corrupted")


def test_ckpt_path_that_does_not_exist(tiny_teacher, tmp_path):
    fails_with(tmp_path, [f"ckpt_path={tmp_path}/nope.ckpt"], f"ckpt_path={tmp_path}/nope.ckpt: .* does not exist")
    fails_with(
        tmp_path,
        ["ckpt_path=last"],
        "ckpt_path=last: .*checkpoints holds no readable checkpoint; to continue an earlier run pass resume=<its run dir>",
    )


def test_student_init_from_a_student_of_other_dimensions(tiny_teacher, tmp_path):
    teacher, _ = tiny_teacher
    narrow = build_random_teacher(
        {**teacher.config.to_dict(), "hidden_size": 32, "head_dim": 8, "intermediate_size": 64}
    )
    build_student(narrow, mamba_ratio=0.5).save_pretrained(tmp_path / "narrow")
    fails_with(
        tmp_path,
        [f"student.init_from={tmp_path / 'narrow'}"],
        "student.init_from '.*narrow' was made from another teacher architecture: hidden_size=32 but the "
        "teacher has hidden_size=64",
    )


def test_student_directory_with_a_truncated_weights_file(distill_run, tmp_path):
    student = tmp_path / "student"
    shutil.copytree(distill_run / "student", student)
    weights = student / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    fails_with(
        tmp_path,
        [f"student.init_from={student}"],
        f"student.init_from '{student}': .*model.safetensors: cannot read safetensors file",
    )
    fails_with(tmp_path, ["stage=dpo", f"stage.init_from={student}"], f"stage.init_from '{student}': .*cannot read")


def test_dpo_from_a_teacher_directory_instead_of_a_student(random_teacher_dir, tmp_path):
    fails_with(
        tmp_path,
        ["stage=dpo", f"stage.init_from={random_teacher_dir}"],
        f"stage.init_from '{random_teacher_dir}': .*config.json: model_type 'llama' is not a hybrid_distill student",
    )


# ----------------------------------------------------------------------------------------- data


def test_bad_data_row_on_the_command_line(tiny_teacher, cache_dir, tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": ""}]},
    ]
    source = tmp_path / "chat.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows))
    line = one_error_line(train_cli(["data=chat", f"data.source={source}", "logger=none"], tmp_path, cache_dir))
    assert f"row 1 of {source}" in line and "(assistant) is empty" in line


def test_data_file_without_the_messages_column(tiny_teacher, tmp_path):
    source = tmp_path / "chat.jsonl"
    source.write_text(json.dumps({"conversation": "hi"}))
    fails_with(tmp_path, ["data=chat", f"data.source={source}"], "data.source: .* has no column 'messages'")


def test_missing_data_file(tiny_teacher, tmp_path):
    fails_with(tmp_path, ["data=chat", f"data.source={tmp_path}/nope.jsonl"], "data.source: .*nope.jsonl")


def test_every_row_longer_than_the_limit(tiny_teacher, tmp_path):
    fails_with(
        tmp_path,
        ["data=chat", "model.recipe.distill.seq_len=8"],
        r"data: no training rows left \(rows longer than 8 tokens are skipped",
    )
