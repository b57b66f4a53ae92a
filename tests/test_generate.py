"""`python -m hybrid_distill.generate`: a saved student answers prompts and chats (transformers' generate on the
student's caches; greedy, the same tokens as the project's own loop), with transformers' options."""

from __future__ import annotations

import io

import pytest

from hybrid_distill import cli, generate  # noqa: F401  (cli registers the config resolvers)
from hybrid_distill.models import HybridForCausalLM, build_student
from hybrid_distill.models.generation import generate as own_generate


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
    out = own_generate(model, ids, max_new_tokens=n, eos_token_id=tokenizer.eos_token_id)
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


def _answer(student_dir, *options: str) -> str:
    out = io.StringIO()
    generate.main([str(student_dir), "--template", "plain", "--prompt", "To be, or", *options], stdout=out)
    return out.getvalue().split("student> ", 1)[1]


def test_transformers_options_reach_generation(student_dir):
    plain = _answer(student_dir, "--max-new-tokens", "24")
    # the student of a barely trained teacher repeats itself (newlines); a strong penalty must change that
    assert _answer(student_dir, "--max-new-tokens", "24", "--repetition-penalty", "5") != plain
    varied = _answer(student_dir, "--max-new-tokens", "24", "--no-repeat-ngram-size", "2")
    assert varied != plain and varied.strip()
    streamed = _answer(student_dir, "--max-new-tokens", "24", "--no-repeat-ngram-size", "2", "--stream")
    assert streamed.strip() == varied.strip()
    words = varied.split()
    stop = words[len(words) // 2]  # a word from the middle of the answer: generation ends with the token completing
    stopped = _answer(student_dir, "--max-new-tokens", "24", "--no-repeat-ngram-size", "2", "--stop", stop).strip()
    assert varied.strip().startswith(stopped) and stop in stopped  # its first occurrence (a token may run past it)
    assert len(stopped) < len(varied.strip())


def test_refused_option_combinations_are_one_clear_error(student_dir):
    with pytest.raises(SystemExit, match="error: .*streamer.*beam"):
        _answer(student_dir, "--stream", "--num-beams", "2")
