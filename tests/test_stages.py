"""The training stages have the effects they exist for (on the shrunk tiny preset), and chain into a pipeline."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from datasets import load_from_disk

from helpers import compose_config
from hybrid_distill.cli import run
from hybrid_distill.data.schemas import prompt_turns
from hybrid_distill.lit.distill import DistillModule
from hybrid_distill.lit.settings import DistillLoss, OptimSettings
from hybrid_distill.models import build_student, set_trainable
from hybrid_distill.models.teacher import load_teacher

QUIET = ["logger=none"]


@pytest.fixture(scope="module")
def distilled_student(tiny_teacher, tmp_path_factory):
    """A briefly distilled student directory (the starting point of DPO). Uncalibrated: the DPO margin test was set
    up on this start (from the calibrated one, 20 DPO steps raised the margin by 0.06 instead of > 0.1)."""
    out = tmp_path_factory.mktemp("distilled")
    return run(compose_config(out, [*QUIET, "trainer.max_steps=4", "student.calibration_batches=0"]))["student_dir"]


def test_kl_distillation_lowers_heldout_kl(tiny_teacher, tmp_path):
    results = run(
        compose_config(
            tmp_path,
            [*QUIET, "loss=kl", "trainer.max_steps=40", "++stage.val_every=40", "model.recipe.distill.lr=3e-3"],
        )
    )
    assert results["kl_before"] > 0
    assert results["kl"] < 0.5 * results["kl_before"], results
    # 40 steps of 4 packed (unpadded) blocks of the stage's length (conftest's shrunk recipe)
    assert results["tokens_seen"] == 40 * 4 * results["train_seq_len"]


def validations(metrics_csv) -> dict[int, float]:
    """{step: val/kl} of every validation a run logged."""
    with open(metrics_csv) as f:
        return {int(row["step"]): float(row["val/kl"]) for row in csv.DictReader(f) if row.get("val/kl")}


@pytest.mark.parametrize("max_steps,passes", [(4, 3), (5, 4)])
def test_the_final_weights_are_validated_once(tiny_teacher, tmp_path, monkeypatch, max_steps, passes):
    """After fit, the held-out metrics are the fit loop's validation at the last step when there was one (4 steps,
    val_every 2: before, 2, 4), not a second pass over the same weights; otherwise (5 steps) one more pass measures
    them. Either way the curve ends at the step count: Lightning logs a validation inside fit at the index of the
    batch it follows (after 2 steps: 1), outside fit at the steps taken (before: 0, after: max_steps)."""
    counted, epoch_end = [], DistillModule.on_validation_epoch_end
    monkeypatch.setattr(DistillModule, "on_validation_epoch_end", lambda self: counted.append(1) or epoch_end(self))
    overrides = ["logger=csv", f"trainer.max_steps={max_steps}", "++stage.val_every=2"]
    results = run(compose_config(tmp_path, overrides))
    assert len(counted) == passes
    logged = validations(tmp_path / "distill" / "metrics.csv")
    assert sorted(logged) == [0, 1, 3, max_steps]
    assert results["kl"] == pytest.approx(logged[max_steps], rel=1e-6) and results["kl"] != logged[0]
    if max_steps == 4:  # the fit loop's own validation of the final weights, logged again at the step count
        assert logged[3] == logged[4]


def test_seqkd_dataset_holds_teacher_answers_for_every_prompt(random_teacher_dir, tmp_path):
    teacher, tokenizer = load_teacher(str(random_teacher_dir))
    results = run(
        compose_config(
            tmp_path,
            [
                *QUIET,
                "stage=seqkd",
                "stage.max_prompts=12",
                "stage.max_val_prompts=3",
                f"model.path={random_teacher_dir}",
            ],
        )
    )
    saved = load_from_disk(results["seqkd_dataset_dir"])
    assert saved.num_rows == {"train": 12, "validation": 3} and results["seqkd_empty_skipped"] == 0
    # validation answers are to the source's own held-out prompts, not to training prompts
    train_prompts = {m[0]["content"] for m in saved["train"]["messages"]}
    assert not train_prompts & {m[0]["content"] for m in saved["validation"]["messages"]}
    rows = saved["train"]
    # the stored answer is the teacher's own greedy continuation of that prompt
    messages = rows[0]["messages"]
    ids = tokenizer.apply_chat_template(
        prompt_turns(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    out = teacher.generate(
        ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert messages[-1] == {"role": "assistant", "content": expected}


def test_dpo_raises_the_chosen_minus_rejected_margin(distilled_student, tmp_path):
    results = run(
        compose_config(
            tmp_path,
            [
                *QUIET,
                "stage=dpo",
                f"stage.init_from={distilled_student}",
                "trainer.max_steps=20",
                "++stage.val_every=20",
                "model.recipe.dpo.lr=1e-3",
                "loss.dpo_beta=0.1",
            ],
        )
    )
    assert results["logp_margin"] > results["logp_margin_before"] + 0.1, results


def test_dpo_without_a_student_is_a_clear_error(tiny_teacher, tmp_path):
    from hybrid_distill.errors import UserError

    with pytest.raises(UserError, match="stage.init_from"):
        run(compose_config(tmp_path, [*QUIET, "stage=dpo"]))


def test_full_pipeline_runs_each_stage_as_its_own_wandb_run(random_teacher_dir, tmp_path):
    # a teacher from model.path (untrained, so that its seqkd answers are never empty)
    results = run(
        compose_config(
            tmp_path,
            [
                "stage=pipeline",
                "trainer.max_steps=2",
                f"model.path={random_teacher_dir}",
                "stage.max_prompts=8",
                "stage.steps.1.overrides=['stage.max_val_prompts=4']",
                "stage.steps.4.overrides=['stage.throughput.enabled=false',"
                "'stage.speculative.enabled=false','stage.recall.multiples=[1]',"
                "'stage.recall.num_examples=2']",
            ],
        )
    )
    state = json.loads((tmp_path / "pipeline_state.json").read_text())
    assert list(state["done"]) == ["pretrain_teacher", "seqkd", "distill", "dpo", "eval"]
    assert results["seqkd/seqkd_rows"] == 8
    # the student is evaluated on held-out answers of the kind it was distilled on (the seqkd validation split)
    assert results["eval/quality/data"] == f"chat from {results['seqkd/seqkd_dataset_dir']}, validation split"
    # dpo started from the distilled student; distill and dpo each logged their own W&B run
    assert results["dpo/student_dir"].endswith("dpo/dpo_student")
    assert len(list(tmp_path.rglob("offline-run-*"))) == 4  # seqkd, distill, dpo and eval (the teacher was loaded)


def test_stepwise_chain_converts_more_layers_of_the_previous_student(tiny_teacher, tmp_path):
    results = run(compose_config(tmp_path, [*QUIET, "experiment=stepwise", "trainer.max_steps=2"]))
    patterns = [results[f"ratio_{r}/pattern"] for r in ("0.5", "0.75", "0.875")]
    assert patterns == ["MAMA", "MMMA", "MMMM"]
    assert results["ratio_0.75/init_from"] == results["ratio_0.5/student_dir"]
    assert results["ratio_0.875/init_from"] == results["ratio_0.75/student_dir"]
    # every layer that was Mamba before stays Mamba (no M turns back into A)
    for before, after in zip(patterns, patterns[1:]):
        assert all(a == "M" for b, a in zip(before, after) if b == "M")


def test_distill_module_trains_the_student_and_never_the_teacher(tiny_teacher):
    teacher, _ = tiny_teacher
    student = build_student(teacher, mamba_ratio=0.5)
    set_trainable(student, "mamba")
    loss = DistillLoss(
        divergence="kl",
        divergence_weight=1.0,
        ce_weight=1.0,
        temperature=1.0,
        t2_scaling=False,
        jsd_beta=0.5,
        vocab_chunk=None,
    )
    module = DistillModule(teacher, student, loss, OptimSettings(lr=1e-2), max_steps=10)
    module.train()
    assert not teacher.training and student.training
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    ids = torch.randint(0, teacher.config.vocab_size, (2, 16))
    optimizer = module.configure_optimizers()["optimizer"]
    module.training_step({"input_ids": ids, "labels": ids}, 0).backward()
    optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items())
    # the checkpoint holds the student only
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(k.startswith("teacher.") for k in checkpoint["state_dict"])


def test_pipeline_wiring_evaluates_on_the_distilled_data_and_shortens_seqkd(tmp_path):
    from hybrid_distill.stages.pipeline import knobs, wiring

    done = {
        "distill": {
            "_stage": "distill",
            "student_dir": "/r/distill/student",
            "train_seq_len": 64,
            "data_source": "/r/seqkd/seqkd_dataset",
        }
    }
    assert "stage.quality.source='/r/seqkd/seqkd_dataset'" in wiring("eval", done)
    cfg = compose_config(tmp_path, ["stage=pipeline", "stage.max_prompts=64"])
    assert knobs("seqkd", cfg.stage) == ["stage.max_prompts=64"] and knobs("distill", cfg.stage) == []
