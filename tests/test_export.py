"""Export to transformers' stock BambaForCausalLM: same logits and greedy tokens as the student (with mixers moved away
from their init, so a wrong mapping cannot hide behind identity convs and unit norms), the parameter cost of
repeating x and B, clear refusals, import back (and further distillation), and lm-eval's `hf` model agreeing with
the `hybrid_distill` adapter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import safetensors.torch
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BambaConfig,
    BambaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from helpers import REPO, compose_config
from hybrid_distill.cli import run
from hybrid_distill.errors import UserError
from hybrid_distill.export import ExportReport, export_student, import_student
from hybrid_distill.export.api import LAYER_TOLERANCE
from hybrid_distill.export import bamba as bamba_format
from hybrid_distill.eval.lm_eval_tasks import TASK_NAMES, TASKS_DIR
from hybrid_distill.export.__main__ import main as export_main
from hybrid_distill.models import HybridForCausalLM, build_student

TOLERANCE = 1e-4  # max abs logit difference, float32
NEW_TOKENS = 24


@torch.no_grad()
def perturbed(student: HybridForCausalLM, seed: int = 0) -> HybridForCausalLM:
    """Every Mamba parameter moved off its init (as training would), in place."""
    g = torch.Generator().manual_seed(seed)
    for block in student.layers:
        if block.kind == "M":
            for p in block.mixer.parameters():
                p.add_(torch.randn(p.shape, generator=g) * (0.5 * p.std(unbiased=False) + 0.05))
    return student


def prompts(vocab_size: int, batch: int = 2, length: int = 20) -> torch.Tensor:
    return torch.randint(vocab_size, (batch, length), generator=torch.Generator().manual_seed(1))  # (B, T)


@torch.no_grad()
def compare(student: HybridForCausalLM, export_dir: Path, label: str, tolerance: float = TOLERANCE) -> float:
    """Logits and greedy generation of the stock model transformers loads from `export_dir` vs the student's;
    returns (and prints) the max abs logit difference."""
    model = AutoModelForCausalLM.from_pretrained(export_dir)  # no trust_remote_code
    assert type(model) is BambaForCausalLM and model.dtype == torch.float32
    student.eval()
    ids = prompts(student.config.vocab_size)
    diff = float((model(ids).logits - student(ids).logits).abs().max())
    eos, pad = student.config.eos_token_id, student.config.pad_token_id
    ours = student.generate(ids, max_new_tokens=NEW_TOKENS, eos_token_id=eos)
    theirs = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos if pad is None else pad,
    )
    print(
        f"\n{label}: pattern {student.config.pattern}, max abs logit diff {diff:.3g}, "
        f"{ours.shape[1] - ids.shape[1]} greedy tokens identical: {torch.equal(ours, theirs)}"
    )
    assert diff < tolerance
    assert torch.equal(ours, theirs)
    return diff


def print_cost(report, label: str) -> None:
    print(f"{label}: {report.summary()}")


# --- the shrunk tiny preset's students -----------------------------------------------------------------------------
def random_teacher(**overrides) -> LlamaForCausalLM:
    """A random Llama of the shrunk tiny preset's shape (conftest.TINY), with a wider init than HF's default."""
    torch.manual_seed(0)
    config = {
        "vocab_size": 2048,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "initializer_range": 0.1,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        **overrides,
    }
    return LlamaForCausalLM(LlamaConfig(**config))


class Exported(NamedTuple):
    student: HybridForCausalLM
    student_dir: Path
    out: Path
    report: ExportReport
    perturbation_effect: float  # max abs logit change the mixer perturbation caused


@pytest.fixture(scope="module", params=["ratio0.5", "ratio0.875"])
def exported(request, tiny_teacher, tmp_path_factory) -> Exported:
    """A perturbed student saved and exported: 50 % of the pretrained tiny teacher (MAMA), and 87.5 % of an 8-layer
    random teacher of the same shape (MMMMMMMA; on the 4-layer teacher 87.5 % rounds to MMMM, which has no attention
    layer and is refused, see REFUSED)."""
    teacher, tokenizer = tiny_teacher
    ratio = float(request.param.removeprefix("ratio"))
    if ratio == 0.875:
        teacher = random_teacher(
            num_hidden_layers=8,
            vocab_size=teacher.config.vocab_size,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    torch.manual_seed(0)
    student = build_student(teacher, mamba_ratio=ratio)
    ids = prompts(student.config.vocab_size)
    with torch.no_grad():
        before = student(ids).logits
        effect = float((perturbed(student)(ids).logits - before).abs().max())
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    student.save_pretrained(root / "student")
    tokenizer.save_pretrained(root / "student")
    report = export_student(root / "student", root / "bamba")
    return Exported(student, root / "student", root / "bamba", report, effect)


def test_exported_model_computes_the_student(exported):
    student, _, out, report, effect = exported
    assert effect > 1e-2  # the mixers are off their init (identity conv, unit norm weight, ...), as after training
    compare(student, out, "tiny")
    print_cost(report, "tiny")
    assert report.differences.logits < TOLERANCE and max(report.differences.layers) < LAYER_TOLERANCE


def test_exported_directory_has_the_tokenizer_and_chat_template(exported, tiny_teacher):
    out = exported.out
    tokenizer = tiny_teacher[1]
    theirs = AutoTokenizer.from_pretrained(out)
    chat = [{"role": "user", "content": "What is 2+3?"}]
    assert theirs.chat_template == tokenizer.chat_template
    assert theirs.apply_chat_template(chat, add_generation_prompt=True) == tokenizer.apply_chat_template(
        chat, add_generation_prompt=True
    )
    assert "auto_map" not in (out / "config.json").read_text()  # nothing asks for remote code


def test_parameter_cost_is_the_repeated_x_and_B(exported):
    student, _, out, report, _ = exported
    bamba = AutoModelForCausalLM.from_pretrained(out)
    assert report.exported_params == sum(p.numel() for p in bamba.parameters())
    assert report.student_params == sum(p.numel() for p in student.parameters())
    assert report.added_params == bamba_format.added_parameters(student.config) > 0


def test_a_wrong_head_order_would_be_caught(exported):
    """The comparison is sensitive to the head mapping: swapping the x rows of two KV groups breaks it."""
    student, _, out, _, _ = exported
    model = AutoModelForCausalLM.from_pretrained(out)
    layer = next(i for i, kind in enumerate(student.config.pattern) if kind == "M")
    hd, heads = student.config.head_dim, student.config.num_attention_heads
    x_rows = model.model.layers[layer].mamba.in_proj.weight.data[heads * hd : 2 * heads * hd]  # (H * hd, d)
    first, last = x_rows[:hd].clone(), x_rows[-hd:].clone()  # query head 0 and H-1: different KV heads
    x_rows[:hd], x_rows[-hd:] = last, first
    ids = prompts(student.config.vocab_size)
    with torch.no_grad():
        assert float((model(ids).logits - student(ids).logits).abs().max()) > 1e-2


# --- architecture options the export carries -----------------------------------------------------------------------
VARIANTS = {
    "attention_bias, mlp_bias, untied, llama3 RoPE": {
        "attention_bias": True,
        "mlp_bias": True,
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    },
    "MHA, heads * head_dim = 2 * hidden": {"num_key_value_heads": 4, "head_dim": 32},
}


@pytest.mark.parametrize("label", list(VARIANTS))
def test_exported_variants_compute_the_student(label, tiny_teacher, tmp_path):
    student = perturbed(build_student(random_teacher(**VARIANTS[label]), mamba_ratio=0.5))
    if student.config.attention_bias:  # zero-initialised biases would not test their mapping
        with torch.no_grad():
            for p in student.parameters():
                if p.dim() == 1:
                    p.add_(0.05 * torch.randn_like(p))
    report = export_student(student, tmp_path / "bamba", tokenizer=tiny_teacher[1])
    compare(student, tmp_path / "bamba", label)
    print_cost(report, label)
    assert report.added_params == bamba_format.added_parameters(student.config)
    assert import_student(tmp_path / "bamba").config.to_dict() == student.config.to_dict()


def test_a_bfloat16_student_exports_in_bfloat16(tiny_teacher, tmp_path):
    student = perturbed(build_student(random_teacher().to(torch.bfloat16), mamba_ratio=0.5))
    report = export_student(student, tmp_path / "bamba", tokenizer=tiny_teacher[1])
    # verified in float32 against the student rebuilt in float32 (RoPE frequencies computed, not upcast)
    assert report.differences.logits < TOLERANCE and max(report.differences.layers) < LAYER_TOLERANCE
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "bamba").dtype == torch.bfloat16
    back = import_student(tmp_path / "bamba")
    assert back.config.torch_dtype == "bfloat16"
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), back.state_dict().values()))


# --- what is refused -----------------------------------------------------------------------------------------------
REFUSED = {  # what the error names: (teacher overrides, mamba_ratio, student options)
    "mixer='mamba1'": ({}, 0.5, {"mixer": "mamba1"}),
    "conv_activation='identity'": ({}, 0.5, {"conv_activation": "identity"}),
    "gate=False": ({}, 0.5, {"gate": False}),
    "gate_norm=False": ({}, 0.5, {"gate_norm": False}),
    "gated RMSNorm eps 1e-05 differs from rms_norm_eps 1e-06": ({"rms_norm_eps": 1e-6}, 0.5, {}),
    "pattern 'MMMM' has no attention layer": ({}, 0.875, {}),
}


@pytest.mark.parametrize("named", list(REFUSED))
def test_what_bamba_cannot_hold_is_refused_naming_it(named, tiny_teacher, tmp_path):
    teacher_overrides, ratio, options = REFUSED[named]
    student = build_student(random_teacher(**teacher_overrides), mamba_ratio=ratio, **options)
    with pytest.raises(UserError, match=re.escape(named)):
        export_student(student, tmp_path / "out", tokenizer=tiny_teacher[1])
    assert list(tmp_path.iterdir()) == []  # nothing written, no staging left


def test_unknown_options_and_tensors_are_refused(tiny_teacher, tmp_path, monkeypatch):
    student = build_student(random_teacher(), mamba_ratio=0.5)
    student.layers[0].mixer.register_parameter("extra", torch.nn.Parameter(torch.ones(3)))
    with pytest.raises(UserError, match=r"extra model\.layers\.0\.mamba\.extra"):
        export_student(student, tmp_path / "out", tokenizer=tiny_teacher[1])
    monkeypatch.setattr(bamba_format, "CARRIED", bamba_format.CARRIED - {"d_conv"})  # as a new option would be
    with pytest.raises(UserError, match="student option d_conv=4 is unknown to the Bamba export"):
        export_student(student, tmp_path / "out", tokenizer=tiny_teacher[1])
    assert list(tmp_path.iterdir()) == []


def test_existing_output_directory_is_refused(exported, tmp_path):
    student_dir = exported.student_dir
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="already exists"):
        export_student(student_dir, tmp_path / "out")


# --- command line --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exported", ["ratio0.5"], indirect=True)  # once: a subprocess imports everything anew
def test_command_line_exports_and_reports(exported, tmp_path):
    student_dir = exported.student_dir
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_distill.export", str(student_dir), str(tmp_path / "out")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parameters: student" in proc.stdout and "max abs logit difference" in proc.stdout
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "out")) is BambaForCausalLM


def test_command_line_names_a_refused_option(tiny_teacher, tmp_path, capsys):
    student = build_student(random_teacher(), mamba_ratio=0.5, mixer="mamba1")
    student.save_pretrained(tmp_path / "student")
    tiny_teacher[1].save_pretrained(tmp_path / "student")
    assert export_main([str(tmp_path / "student"), str(tmp_path / "out")]) == 2
    assert "error: student option mixer='mamba1' cannot be exported to Bamba" in capsys.readouterr().out


# --- import back ---------------------------------------------------------------------------------------------------
def test_import_gives_back_the_student(exported, tmp_path):
    student, _, out, _, _ = exported
    back = import_student(out)
    assert back.config.to_dict() == student.config.to_dict()
    ours, theirs = student.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # re-saved by transformers (as after fine-tuning with TRL/PEFT tools) it still imports
    AutoModelForCausalLM.from_pretrained(out).save_pretrained(tmp_path / "resaved")
    assert import_student(tmp_path / "resaved").config.to_dict() == student.config.to_dict()


def test_eval_loads_an_export_as_the_student(exported):
    from hybrid_distill.eval.loading import load_student, resolve_checkpoint

    student, tokenizer = load_student(resolve_checkpoint(str(exported.out)), None, None, None)
    assert student.config.to_dict() == exported.student.config.to_dict()
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), exported.student.state_dict().values()))
    assert tokenizer.chat_template is not None


def test_import_refuses_a_model_trained_apart_after_export(exported, tmp_path):
    student, _, out, _, _ = exported
    model = AutoModelForCausalLM.from_pretrained(out)
    layer = next(i for i, kind in enumerate(student.config.pattern) if kind == "M")
    hd, heads = student.config.head_dim, student.config.num_attention_heads
    with torch.no_grad():  # rows [z, x, B, C, dt] in heads: query head 1's first B row;
        # it shares KV head 0 with query head 0, so the two B rows must stay equal
        model.model.layers[layer].mamba.in_proj.weight[(2 * heads + 1) * hd] += 1.0
    model.save_pretrained(tmp_path / "trained")
    with pytest.raises(UserError, match=f"layers.{layer}.mamba.in_proj.weight: the B rows of query heads that share"):
        import_student(tmp_path / "trained")


def test_import_refuses_a_bamba_model_of_another_shape(tmp_path):
    config = BambaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        mamba_n_heads=4,
        mamba_d_head=16,
        mamba_expand=2,
        mamba_d_state=8,
        attn_layer_indices=[1],
    )
    BambaForCausalLM(config).save_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match="has no hybrid_distill student form: mamba_d_head=16 .needs 8."):
        import_student(tmp_path / "other")


def test_an_export_distils_further_as_student_init_from(tiny_teacher, tmp_path):
    distilled = run(compose_config(tmp_path / "first", ["logger=none", "trainer.max_steps=2"]))["student_dir"]
    export_student(distilled, tmp_path / "bamba")
    results = run(
        compose_config(
            tmp_path / "second",
            ["logger=none", "trainer.max_steps=2", "mamba_ratio=0.75", f"student.init_from={tmp_path / 'bamba'}"],
        )
    )
    assert results["pattern"] == "MMMA" and results["init_from"] == str(tmp_path / "bamba")
    assert results["student_ppl"] < float("inf")
    before = import_student(tmp_path / "bamba").state_dict()
    after = safetensors.torch.load_file(Path(results["student_dir"]) / "model.safetensors")
    assert not torch.equal(before["layers.0.mixer.in_proj.weight"], after["layers.0.mixer.in_proj.weight"])
    assert torch.equal(before["layers.3.mixer.q_proj.weight"], after["layers.3.mixer.q_proj.weight"])  # frozen


# --- lm-eval -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exported", ["ratio0.875"], indirect=True)  # its generations are not empty
def test_lm_eval_hf_model_on_the_export_equals_the_adapter_on_the_student(exported):
    import lm_eval
    import lm_eval.models  # noqa: F401  (registers hf: lm_eval fills its registry lazily only while it is empty)
    from lm_eval.tasks import TaskManager

    import hybrid_distill.eval.lm_eval_adapter  # noqa: F401  (registers hybrid_distill)

    student_dir, out = exported.student_dir, exported.out
    tasks = TaskManager(include_path=str(TASKS_DIR))
    common = {"tasks": list(TASK_NAMES), "task_manager": tasks, "device": "cpu", "batch_size": 2, "log_samples": True}
    ours = lm_eval.simple_evaluate(
        model="hybrid_distill", model_args=f"pretrained={student_dir},max_length=48", **common
    )
    theirs = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={out},max_length=48", **common)
    for task in TASK_NAMES:
        numbers = {k: v for k, v in ours["results"][task].items() if isinstance(v, float) and "stderr" not in k}
        print(f"\n{task}: hybrid_distill {numbers}; hf { ({k: theirs['results'][task][k] for k in numbers}) }")
        assert numbers and all(theirs["results"][task][k] == pytest.approx(v, rel=1e-4) for k, v in numbers.items())
        # per document: every log-likelihood (and greedy flag) and every generated text
        mine = {s["doc_id"]: s["filtered_resps"] for s in ours["samples"][task]}
        other = {s["doc_id"]: s["filtered_resps"] for s in theirs["samples"][task]}
        assert mine.keys() == other.keys() and mine
        for doc, resps in mine.items():
            (texts, values), (their_texts, their_values) = split(resps), split(other[doc])
            assert their_texts == texts and their_values == pytest.approx(values, rel=1e-4), (task, doc)
        print(f"{task} responses of document 0: {mine[0]}")


def split(resps) -> tuple[list[str], list[float]]:
    """lm-eval's per-document responses ([ll, greedy] pairs, floats, generated strings): (texts, numbers)."""
    texts, values = [], []
    for r in resps:
        more = split(r) if isinstance(r, (list, tuple)) else ([r], []) if isinstance(r, str) else ([], [float(r)])
        texts, values = texts + more[0], values + more[1]
    return texts, values


# --- the real SmolLM2-135M teacher (slow) --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.5, 0.875])
def test_smollm2_students_export_exactly(smollm2, ratio, tmp_path):
    """30 layers in float32: rounding compounds over depth, so the logits are held to the student's own rounding noise
    (its chunked scan vs its sequential reference scan, the same math) and each layer to LAYER_TOLERANCE."""
    teacher, tokenizer = smollm2
    student = perturbed(build_student(teacher, mamba_ratio=ratio))
    report = export_student(student, tmp_path / "bamba", tokenizer=tokenizer)
    ids = prompts(student.config.vocab_size)
    with torch.no_grad():
        chunked = student(ids).logits
        student.config.scan_backend = "torch_ref"
        noise = float((student(ids).logits - chunked).abs().max())
        student.config.scan_backend = "auto"
    print(f"\nSmolLM2-135M {ratio}: the student's own scan backends differ by {noise:.3g} (max abs logit)")
    compare(student, tmp_path / "bamba", f"SmolLM2-135M {ratio}", tolerance=max(TOLERANCE, 2 * noise))
    print_cost(report, f"SmolLM2-135M {ratio}")
    assert max(report.differences.layers) < LAYER_TOLERANCE
    assert report.added_params == bamba_format.added_parameters(student.config)
