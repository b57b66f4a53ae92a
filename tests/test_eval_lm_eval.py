"""The hybrid as an lm-evaluation-harness model: exact log-likelihoods, generation, rolling perplexity, and a full
harness run on local YAML tasks (tests/fixtures/lm_eval, no hub) through the Python API and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from transformers import LlamaConfig, LlamaForCausalLM

from helpers import REPO
from hybrid_distill.data.tokenizer import load_or_train_tokenizer
from hybrid_distill.eval.lm_eval_adapter import HybridLM
from hybrid_distill.models import build_student

FIXTURES = REPO / "tests" / "fixtures" / "lm_eval"
TASKS = {
    "hd_recall_mc": """output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list: [{metric: acc}]""",
    "hd_copy_gen": """output_type: generate_until
doc_to_text: "{{prompt}}"
doc_to_target: "{{target}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 6, do_sample: false}
metric_list: [{metric: exact_match}]""",
    "hd_text_ppl": """output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list: [{metric: word_perplexity}, {metric: bits_per_byte}]""",
}
DATA = {"hd_recall_mc": "recall_mc.jsonl", "hd_copy_gen": "copy_gen.jsonl", "hd_text_ppl": "text_ppl.jsonl"}


@pytest.fixture(scope="module")
def student_dir(cache_dir, tmp_path_factory) -> Path:
    """A small random hybrid saved with the tiny tokenizer (lm_eval only needs a loadable student)."""
    tokenizer = load_or_train_tokenizer(cache_dir / "tokenizers", 2048)
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=2048,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=48,
        )
    )
    path = tmp_path_factory.mktemp("lm_eval_student")
    build_student(teacher, mamba_ratio=0.5).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_tasks(path: Path) -> Path:
    """The local YAML tasks (TASKS on the fixture data) in `path`, for TaskManager(include_path=path)."""
    for name, body in TASKS.items():
        data = FIXTURES / DATA[name]
        (path / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
            f"    test: {data}\ntest_split: test\n{body}\n"
        )
    return path


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("lm_eval_tasks"))


def reference_logprob(lm: HybridLM, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    ids = torch.tensor([context + continuation])
    logp = lm.model(ids).logits[0].log_softmax(-1)  # (T, V)
    positions = range(len(context) - 1, len(context) + len(continuation) - 1)
    total = sum(float(logp[p, t]) for p, t in zip(positions, continuation))
    greedy = all(int(logp[p].argmax()) == t for p, t in zip(positions, continuation))
    return total, greedy


def test_loglikelihood_is_exact_across_batches(student_dir):
    lm = HybridLM(pretrained=str(student_dir), device="cpu", batch_size=2, max_length=48)
    pairs = [
        ("Remember: apple=12.", " 12"),
        ("Hi", " there friend"),
        ("A longer context with more words", " x"),
        ("", "Start of text"),
    ]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    results = lm.loglikelihood(requests)
    for (context, continuation), (logprob, greedy) in zip(pairs, results):
        ctx, cont = (
            ((lm.prefix_token_id,), lm.tok_encode(continuation, add_special_tokens=False))
            if not context
            else lm._encode_pair(context, continuation)
        )
        expected, expected_greedy = reference_logprob(lm, list(ctx), list(cont))
        assert logprob == pytest.approx(expected, abs=1e-4) and logprob < 0 and greedy == expected_greedy
    # the model's own greedy continuation is reported as greedy
    prompt = lm.tok_encode("Once upon")
    own = lm.model.generate(torch.tensor([prompt]), max_new_tokens=3)[0, len(prompt) :].tolist()
    [(_, greedy)] = lm._loglikelihood_tokens([(None, prompt, own)])
    assert greedy


@pytest.mark.parametrize("max_length", [16, 64])
def test_rolling_loglikelihood_scores_every_token_once(student_dir, max_length):
    lm = HybridLM(pretrained=str(student_dir), device="cpu", max_length=max_length)
    text = (FIXTURES / "text_ppl.jsonl").read_text().splitlines()[0]
    tokens = lm.tok_encode(text)
    assert 16 < len(tokens) < 64  # several windows at 16, one at 64
    [total] = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    # windows of max_length predicted tokens; each predicted from as many earlier tokens as fit in max_length
    seq = [lm.prefix_token_id, *tokens]  # seq[i] predicts seq[i + 1]
    expected = 0.0
    for start in range(0, len(tokens), max_length):
        end = min(start + max_length, len(tokens))  # the window predicts seq[start + 1 : end + 1]
        expected += reference_logprob(lm, seq[max(0, end - max_length) : start + 1], seq[start + 1 : end + 1])[0]
    assert total == pytest.approx(expected, rel=1e-4)


def test_generate_until_stops_at_the_stop_string(student_dir):
    lm = HybridLM(pretrained=str(student_dir), device="cpu")
    free = lm.generate_until([Instance("generate_until", {}, ("Copy exactly:", {"max_gen_toks": 12}), 0)])[0]
    prompt = lm.tok_encode("Copy exactly:")
    reference = lm.tok_decode(
        lm.model.generate(torch.tensor([prompt]), max_new_tokens=12, eos_token_id=lm.eot_token_id)[
            0, len(prompt) :
        ].tolist()
    )
    assert free == reference and len(free) > 1
    stop = free[len(free) // 2]
    [cut] = lm.generate_until(
        [Instance("generate_until", {}, ("Copy exactly:", {"max_gen_toks": 12, "until": [stop]}), 0)]
    )
    assert cut == free.split(stop)[0]


def test_harness_runs_local_tasks(student_dir, task_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(
        model="hybrid_distill",
        model_args=f"pretrained={student_dir},max_length=48",
        tasks=list(TASKS),
        task_manager=TaskManager(include_path=str(task_dir)),
        device="cpu",
        batch_size=2,
    )
    results = out["results"]
    assert 0 <= results["hd_recall_mc"]["acc,none"] <= 1
    assert results["hd_copy_gen"]["exact_match,none"] in (0.0, 0.5, 1.0)
    assert results["hd_text_ppl"]["word_perplexity,none"] > 1


def test_command_line_registers_the_model(student_dir, task_dir, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybrid_distill.eval.lm_eval_cli",
            "--model",
            "hybrid_distill",
            "--model_args",
            f"pretrained={student_dir},max_length=48",
            "--tasks",
            "hd_recall_mc",
            "--include_path",
            str(task_dir),
            "--device",
            "cpu",
            "--output_path",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result_file] = tmp_path.rglob("results_*.json")
    assert "acc,none" in json.loads(result_file.read_text())["results"]["hd_recall_mc"]
