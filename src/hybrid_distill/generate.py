"""Sample text from a saved student: `python -m hybrid_distill.generate <student dir | run dir> --prompt "..."`
(also `hd-generate`), or a chat in the terminal with --interactive. Uses the student's own caches (models/generation.py).

    python -m hybrid_distill.generate outputs/train/runs/<run> --prompt "What is 3 + 4?" --prompt "Sort: c a b"
    python -m hybrid_distill.generate outputs/train/runs/<run>/student --interactive --sample --temperature 0.7
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .errors import UserError


def encode(tokenizer, turns: list[dict[str, str]], template: str):
    """Token ids (1, T) of a conversation: with the tokenizer's chat template (template chat, or auto when it has
    one), else the last turn's plain text."""
    use_chat = template == "chat" or (template == "auto" and getattr(tokenizer, "chat_template", None))
    if use_chat:
        return tokenizer.apply_chat_template(turns, add_generation_prompt=True, return_tensors="pt", return_dict=True)[
            "input_ids"
        ]
    return tokenizer(turns[-1]["content"], return_tensors="pt")["input_ids"]


def reply(model, tokenizer, turns: list[dict[str, str]], args: argparse.Namespace) -> str:
    """The model's answer to the conversation `turns`, decoded without special tokens."""
    import torch

    ids = encode(tokenizer, turns, args.template).to(next(model.parameters()).device)  # (1, T)
    generator = torch.Generator().manual_seed(args.seed) if args.sample else None
    out = model.generate(
        ids,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        eos_token_id=tokenizer.eos_token_id,
        generator=generator,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def chat(model, tokenizer, args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> None:
    """A conversation: each line read is a user turn, each answer joins the history; an empty line or EOF ends it."""
    turns: list[dict[str, str]] = []
    while True:
        stdout.write("you> ")
        stdout.flush()
        line = stdin.readline()
        if not line.strip():
            return
        turns.append({"role": "user", "content": line.strip()})
        answer = reply(model, tokenizer, turns, args)
        turns.append({"role": "assistant", "content": answer})
        stdout.write(f"student> {answer}\n")


def load(path: str, scan_backend: str | None):
    """(student, tokenizer) from a student directory or a training run directory (its final student)."""
    from .eval.loading import load_student, resolve_checkpoint

    ck = resolve_checkpoint(path)
    if ck.student_dir is None:
        raise UserError(f"'{path}' is a Lightning checkpoint; pass the run directory or its student directory")
    student, tokenizer = load_student(ck, None, None, scan_backend)
    return student, tokenizer


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hybrid_distill.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ckpt", help="a saved student directory, or a training run directory")
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for several)")
    parser.add_argument("--interactive", action="store_true", help="chat: read user turns from stdin")
    parser.add_argument(
        "--template",
        choices=("auto", "chat", "plain"),
        default="auto",
        help="chat: the tokenizer's chat template; plain: the text as is; auto: chat if it has one",
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scan-backend", default=None, help="as saved with the student unless given")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    args = parse(argv)
    if not args.prompt and not args.interactive:
        raise SystemExit("error: give --prompt TEXT (repeatable) or --interactive")
    try:
        model, tokenizer = load(args.ckpt, args.scan_backend)
        for prompt in args.prompt:
            stdout.write(
                f"prompt> {prompt}\nstudent> {reply(model, tokenizer, [{'role': 'user', 'content': prompt}], args)}\n"
            )
        if args.interactive:
            chat(model, tokenizer, args, stdin, stdout)
    except (UserError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
