"""Bad input of the kinds an operator meets (wrong numbers on the command line, empty or broken data files, a
read-only directory, a full disk) ends the run with one line and exit status 2, before anything is lost."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from helpers import compose_config, train_cli
from hybrid_distill.cli import run
from hybrid_distill.data.loaders import load_chat_dataset
from hybrid_distill.errors import UserError
from hybrid_distill.reliability.checkpoints import AtomicCheckpointIO
from hybrid_distill.stages import distill
from test_reliability_errors import one_error_line


@pytest.fixture
def no_model_loads(monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(distill, "obtain_teacher", load)


@pytest.mark.parametrize(
    "override,match",
    [
        ("stage.lr=abc", "stage.lr='abc' must be a number"),
        ("seed=abc", "seed='abc' must be an integer"),
        ("stage.batch_size=0", "stage.batch_size=0 must be >= 1"),
        ("trainer.max_steps=-5", "trainer.max_steps=-5 must be >= 0"),
        ("loss.temperature=0", "loss.temperature=0 must be > 0"),
    ],
)
def test_bad_numbers_are_named_before_any_model_loads(no_model_loads, tmp_path, override, match):
    with pytest.raises(UserError, match=f"^{match}$"):
        run(compose_config(tmp_path, ["logger=none", override]))


def test_bad_numbers_on_the_command_line_are_one_line(tmp_path):
    line = one_error_line(train_cli(["stage.lr=abc", "seed=-1", "logger=none"], tmp_path, tmp_path / "cache"))
    assert line == "error: seed=-1 must be >= 0; stage.lr='abc' must be a number"


CHAT = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "{path} is empty: no rows"),
        (b"\n  \n", "{path} is empty: no rows"),
        (CHAT.encode() + b'{"messages": [\n', r"row 2 of {path} is not valid JSON \(Expecting value at column 15\)"),
        (CHAT.encode() + b"[1, 2]\n", "row 2 of {path} is not a JSON object"),
        (
            CHAT.encode() * 2 + "caf\xe9".encode("latin-1") + b"\n",
            r"row 3 of {path} is not UTF-8 text \(byte 3: 0xe9\)",
        ),
    ],
)
def test_empty_malformed_or_non_utf8_jsonl_names_file_and_row(tmp_path, content, match):
    path = tmp_path / "chat.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match.format(path=path)):
        load_chat_dataset(path)


def test_a_broken_data_file_ends_the_run_with_one_line(tiny_teacher, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_bytes(CHAT.encode() + b"{oops\n")
    with pytest.raises(UserError, match=f"^data.source: row 2 of {path} is not valid JSON"):
        run(compose_config(tmp_path / "run", ["logger=none", "data=chat", f"data.source={path}"]))


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write into, root included (a read-only mount when running as root)."""
    path = tmp_path / "read_only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("running as root without permission to mount a read-only file system")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_log_dir_is_one_line(read_only_dir, tmp_path):
    env_log_dir = ["paths.log_dir=" + str(read_only_dir)]
    line = one_error_line(train_cli([*env_log_dir, "logger=none"], tmp_path, tmp_path / "cache"))
    assert (
        f"cannot create the run directory {read_only_dir}/train/runs" in line
        or f"cannot create {read_only_dir}/train/runs" in line
    )
    assert "must be a writable directory" in line


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path):
    target = tmp_path / "last.ckpt"
    torch.save({"step": 1}, target)
    # the temp file the write goes to is /dev/full: every write fails with ENOSPC, as on a full disk
    (tmp_path / f".last.ckpt.tmp-{os.getpid()}").symlink_to("/dev/full")
    with pytest.raises(
        UserError,
        match=rf"^checkpoint {target} could not be written \(.*\); the previous one is "
        r"kept; .* free on that file system",
    ):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "weights": torch.zeros(100_000)}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_failed_new_run_is_removed_or_marked_and_a_continued_one_left_alone(tmp_path):
    import json

    from hybrid_distill.exits import mark_failed
    from hybrid_distill.reliability.recorded_config import config_subdir

    setup_only, with_outputs, continued = (tmp_path / name for name in ("setup_only", "with_outputs", "continued"))
    for run_dir in (setup_only, with_outputs, continued):
        (run_dir / ".hydra").mkdir(parents=True)
        (run_dir / "train.log").touch()
    (continued / ".hydra" / "config.yaml").touch()  # recorded by an earlier run: this one continues it
    for run_dir in (setup_only, with_outputs, continued):
        config_subdir(str(run_dir))  # what Hydra asks when the run starts
    (with_outputs / "distill").mkdir()
    for run_dir in (setup_only, with_outputs, continued):
        mark_failed(run_dir, "data.source: row 2 of x.jsonl is not valid JSON", 2)
    assert not setup_only.exists()  # nothing but Hydra's setup: cleaned up
    assert json.loads((with_outputs / "failed.json").read_text())["exit_status"] == 2
    assert sorted(p.name for p in continued.iterdir()) == [".hydra", "train.log"]


def test_eval_refuses_a_read_only_results_directory_before_running_the_suite(read_only_dir, tmp_path, monkeypatch):
    from helpers import compose_eval
    from hybrid_distill.stages import eval as eval_stage

    # a student directory inside a read-only run directory is simulated by pointing the results directory there
    monkeypatch.setattr(
        eval_stage, "resolve_checkpoint", lambda ckpt: eval_stage.Checkpoint(read_only_dir, None, read_only_dir, None)
    )
    monkeypatch.setattr(
        eval_stage,
        "evaluate_checkpoint",
        lambda *args, **kwargs: pytest.fail("the suite ran before the directory was checked"),
    )
    with pytest.raises(
        UserError,
        match=f"the results directory \\(the evaluated run's\\) {read_only_dir} is not "
        "writable \\(Read-only file system|Permission denied\\)",
    ):
        eval_stage.evaluate_from_config(compose_eval(tmp_path / "out", ["ckpt=unused", "logger=none"]))
