"""The hybrid as an lm-evaluation-harness model: exact log-likelihoods, generation, rolling perplexity, and a full
harness run on the package's own YAML tasks (eval/lm_eval_tasks, no hub) through the Python API and the command line
(which includes them by itself, beside a user's --include_path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helpers import REPO
from hybrid_distill.data.tokenizer import load_or_train_tokenizer
from hybrid_distill.eval.lm_eval_tasks import TASK_NAMES, TASKS_DIR
from hybrid_distill.models.generation import generate
from hybrid_distill.models import build_student

# the lm-eval extra (.[eval]): the GPU image does not stage it, and `pytest -m gpu` must still collect there
Instance = pytest.importorskip("lm_eval.api.instance", reason="optional extra: pip install -e '.[eval]'").Instance
HybridLM = pytest.importorskip("hybrid_distill.eval.lm_eval_adapter").HybridLM


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
    own = generate(lm.model, torch.tensor([prompt]), max_new_tokens=3)[0, len(prompt) :].tolist()
    [(_, greedy)] = lm._loglikelihood_tokens([(None, prompt, own)])
    assert greedy


@pytest.mark.parametrize("max_length", [16, 64])
def test_rolling_loglikelihood_scores_every_token_once(student_dir, max_length):
    lm = HybridLM(pretrained=str(student_dir), device="cpu", max_length=max_length)
    text = (TASKS_DIR / "hd_text_ppl.jsonl").read_text().splitlines()[0]
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
        generate(lm.model, torch.tensor([prompt]), max_new_tokens=12, eos_token_id=lm.eot_token_id)[
            0, len(prompt) :
        ].tolist()
    )
    assert free == reference and len(free) > 1
    stop = free[len(free) // 2]
    [cut] = lm.generate_until(
        [Instance("generate_until", {}, ("Copy exactly:", {"max_gen_toks": 12, "until": [stop]}), 0)]
    )
    assert cut == free.split(stop)[0]


def test_harness_runs_the_shipped_tasks(student_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(
        model="hybrid_distill",
        model_args=f"pretrained={student_dir},max_length=48",
        tasks=list(TASK_NAMES),
        task_manager=TaskManager(include_path=str(TASKS_DIR)),
        device="cpu",
        batch_size=2,
    )
    results = out["results"]
    assert 0 <= results["hd_recall_mc"]["acc,none"] <= 1
    assert results["hd_copy_gen"]["exact_match,none"] in (0.0, 0.5, 1.0)
    assert results["hd_text_ppl"]["word_perplexity,none"] > 1


# slow (lm_eval's command line in a subprocess): test_harness_runs_the_shipped_tasks runs the same tasks in-process
@pytest.mark.slow
def test_command_line_registers_the_model_and_includes_the_shipped_tasks(student_dir, tmp_path):
    user_tasks = tmp_path / "user_tasks"  # a user's own --include_path works beside the shipped tasks
    user_tasks.mkdir()
    (user_tasks / "user_recall.yaml").write_text(
        "task: user_recall\ninclude: " + str(TASKS_DIR / "hd_recall_mc.yaml") + "\n"
    )
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
            "hd_recall_mc,user_recall",
            "--include_path",
            str(user_tasks),
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
    results = json.loads(result_file.read_text())["results"]
    assert results["hd_recall_mc"]["acc,none"] == results["user_recall"]["acc,none"]
