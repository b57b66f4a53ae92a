"""`python -m hybrid_distill.generate`: a saved student answers prompts (its own greedy decoding) and chats."""

from __future__ import annotations

import io

import pytest

from hybrid_distill import cli, generate  # noqa: F401  (cli registers the config resolvers)
from hybrid_distill.models import HybridForCausalLM, build_student


@pytest.fixture(scope="module")
def student_dir(tiny_teacher, tmp_path_factory):
    teacher, tokenizer = tiny_teacher
    path = tmp_path_factory.mktemp("student")
    build_student(teacher, mamba_ratio=0.5).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _greedy(student_dir, tokenizer, turns, n):
    model = HybridForCausalLM.from_pretrained(student_dir).eval()
    ids = tokenizer.apply_chat_template(turns, add_generation_prompt=True, return_tensors="pt", return_dict=True)[
        "input_ids"
    ]
    out = model.generate(ids, max_new_tokens=n, eos_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def test_prompts_get_the_students_greedy_answers(student_dir, tiny_teacher):
    out = io.StringIO()
    generate.main([str(student_dir), "--prompt", "What is 3 + 4?", "--max-new-tokens", "6"], stdout=out)
    expected = _greedy(student_dir, tiny_teacher[1], [{"role": "user", "content": "What is 3 + 4?"}], 6)
    assert out.getvalue() == f"prompt> What is 3 + 4?\nstudent> {expected}\n"


def test_interactive_chat_keeps_the_history(student_dir, tiny_teacher):
    out = io.StringIO()
    generate.main(
        [str(student_dir), "--interactive", "--max-new-tokens", "4"], stdin=io.StringIO("hi\nmore\n\n"), stdout=out
    )
    first = _greedy(student_dir, tiny_teacher[1], [{"role": "user", "content": "hi"}], 4)
    second = _greedy(
        student_dir,
        tiny_teacher[1],
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "more"},
        ],
        4,
    )
    assert out.getvalue() == f"you> student> {first}\nyou> student> {second}\nyou> "


def test_a_bad_path_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="error: ckpt .* does not exist"):
        generate.main([str(tmp_path / "nope"), "--prompt", "x"])
