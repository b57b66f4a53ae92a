"""Calibrated start (models/calibrate.py): what it changes, that it is least squares, and that the untrained
student it gives is closer to the teacher than both the zeroed-output baseline and the reference (W_O copied) init."""

from __future__ import annotations

import pytest
import torch

from helpers import compose_config
from hybrid_distill.data.corpus import shakespeare_documents
from hybrid_distill.errors import UserError
from hybrid_distill.models import build_student, calibrate_student
from hybrid_distill.models.calibrate import fit_channel_scales
from hybrid_distill.stages.student import calibrate_from_config, student_from_config
from test_models_common import make_teacher, random_ids


def _ids(tokenizer, split: str, rows: int, length: int = 64) -> torch.Tensor:
    text = "\n".join(shakespeare_documents()[split]["text"])[: rows * length * 8]
    return torch.tensor(tokenizer(text)["input_ids"][: rows * length]).view(rows, length)


@torch.no_grad()
def _kl(teacher, student, ids) -> float:
    t = teacher(input_ids=ids).logits.log_softmax(-1)
    s = student(ids).logits.log_softmax(-1)
    return float((t.exp() * (t - s)).sum(-1).mean())


def _zeroed(student):
    for i in student.config.mamba_layers:
        student.layers[i].mixer.out_proj.weight.data.zero_()
    return student


@pytest.mark.parametrize("mixer", ["mamba2", "mamba1"])
def test_calibrated_start_is_closer_to_the_teacher_than_zeroed_and_reference(tiny_teacher, mixer):
    teacher, tokenizer = tiny_teacher
    calib, held_out = _ids(tokenizer, "train", 8).split(4), _ids(tokenizer, "validation", 4)
    make = lambda: build_student(teacher, pattern="MAMA", mixer=mixer).eval()  # noqa: E731
    reference, zeroed, calibrated = make(), _zeroed(make()), make()
    report = calibrate_student(calibrated, teacher, calib)
    kl = {
        name: _kl(teacher, s, held_out)
        for name, s in [("reference", reference), ("zeroed", zeroed), ("calibrated", calibrated)]
    }
    assert kl["calibrated"] < kl["zeroed"] and kl["calibrated"] < kl["reference"], kl
    for layer in report.values():  # never worse than a zero output on the calibration data, and better than before
        assert layer["rel_err_after"] <= 1.0 and layer["rel_err_after"] < layer["rel_err_before"], report


def test_calibration_changes_only_the_gate_rows_and_out_proj_of_the_chosen_layers():
    teacher = make_teacher()
    student = build_student(teacher, pattern="MAMM").eval()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    calibrate_student(student, teacher, [random_ids(2, 12)], layers=[2])
    mixer = student.layers[2].mixer
    z = mixer.in_proj_rows("z")
    changed = {k for k, v in student.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"layers.2.mixer.in_proj.weight", "layers.2.mixer.out_proj.weight"}
    w_before, w = before["layers.2.mixer.in_proj.weight"], mixer.in_proj.weight
    assert torch.equal(w[z.stop :], w_before[z.stop :])  # x, B, C, dt rows untouched
    assert torch.equal(w[z], w[z][:1].expand_as(w[z]))  # open gate: every z row the same direction


def test_channel_scales_are_the_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    feats, weight, targets = (
        torch.randn(200, 6, generator=g),
        torch.randn(5, 6, generator=g),
        torch.randn(200, 5, generator=g),
    )
    scales = fit_channel_scales(feats, weight, targets, ridge=0.0)
    # slow reference: the explicit design matrix, one column per channel: column c = weight[:, c] * feats[t, c]
    design = (feats[:, None, :] * weight[None]).reshape(-1, 6)  # (200*5, 6)
    expected = torch.linalg.lstsq(design.double(), targets.reshape(-1, 1).double()).solution[:, 0]
    torch.testing.assert_close(scales.double(), expected, rtol=1e-6, atol=1e-8)


def test_padding_does_not_change_the_calibration():
    teacher = make_teacher()
    ids = random_ids(2, 12)
    padded = torch.cat([ids, torch.full((2, 5), 7)], dim=1)  # 5 junk tokens after each row
    mask = torch.cat([torch.ones(2, 12), torch.zeros(2, 5)], dim=1)
    a, b = build_student(teacher, pattern="MAMA").eval(), build_student(teacher, pattern="MAMA").eval()
    b.load_state_dict(a.state_dict())
    calibrate_student(a, teacher, [ids])
    calibrate_student(b, teacher, [(padded, mask)])
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)


def test_ratio_zero_is_still_the_teacher_and_bad_layers_are_named():
    teacher = make_teacher()
    student = build_student(teacher, mamba_ratio=0.0)
    assert calibrate_student(student, teacher, [random_ids()]) == {}
    with torch.no_grad():
        torch.testing.assert_close(student(random_ids()).logits, teacher(input_ids=random_ids()).logits)
    with pytest.raises(ValueError, match=r"layer\(s\) \[1\] of the student are not Mamba layers"):
        calibrate_student(build_student(teacher, pattern="MAMA"), teacher, [random_ids()], layers=[1])


def test_calibration_batches_config(tiny_teacher, tmp_path):
    teacher, tokenizer = tiny_teacher
    from hybrid_distill.data.build import build_datamodule

    def student_and_summary(n):
        cfg = compose_config(tmp_path, ["logger=none", f"student.calibration_batches={n}"])
        torch.manual_seed(0)
        student = student_from_config(cfg, teacher)
        dm = build_datamodule(cfg.data, tokenizer, 4, 64, str(tmp_path / "ds"), cfg.seed)
        return student, calibrate_from_config(cfg, student, teacher, dm)

    plain, summary0 = student_and_summary(0)  # 0: the reference init, exactly what build_student gives
    torch.manual_seed(0)
    reference = build_student(teacher, mamba_ratio=0.5)
    assert summary0 == {}
    assert all(torch.equal(p, q) for p, q in zip(plain.state_dict().values(), reference.state_dict().values()))
    _, summary = student_and_summary(2)
    assert summary["calibration/batches"] == 2 and summary["calibration/layers"] == 2
    assert summary["calibration/rel_err_after"] < min(1.0, summary["calibration/rel_err_before"])
    with pytest.raises(UserError, match="student.calibration_batches must be an integer >= 0"):
        student_and_summary(-1)


def test_reported_error_is_the_calibrated_mixers_own_error():
    teacher = make_teacher()
    student = build_student(teacher, pattern="MAMA").eval()
    ids = random_ids(3, 16)
    report = calibrate_student(student, teacher, [ids])
    with torch.no_grad():  # recompute independently: the teacher attention's output vs the calibrated mixer's
        seen = {}
        hook = teacher.model.layers[2].self_attn.register_forward_hook(
            lambda m, args, kwargs, out: seen.update(h=kwargs["hidden_states"], a=out[0]), with_kwargs=True
        )
        teacher(input_ids=ids)
        hook.remove()
        got, _ = student.layers[2].mixer(seen["h"])
    expected = float((seen["a"] - got).pow(2).sum() / seen["a"].pow(2).sum())
    assert report[2]["rel_err_after"] == pytest.approx(expected, rel=1e-4)
    assert expected < 1.0
