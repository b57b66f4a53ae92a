"""Sample text from a saved student: `python -m hybrid_distill.generate <student dir | run dir> --prompt "..."`
(also `hd-generate`), or a chat in the terminal with --interactive. Decodes with transformers' `generate` on the
student's own caches (models/hf_model.py), so its options apply: repetition penalty, n-gram blocking, beams, stop
strings, streaming.

    python -m hybrid_distill.generate outputs/train/runs/<run> --prompt "What is 3 + 4?" --prompt "Sort: c a b"
    python -m hybrid_distill.generate outputs/train/runs/<run>/student --interactive --sample --temperature 0.7 --stream
    python -m hybrid_distill.generate <run> --prompt "Once upon" --template plain --repetition-penalty 1.3 --stop "."
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


def generation_options(args: argparse.Namespace) -> dict:
    """The command line's options as transformers' generate kwargs (None: the model's generation config decides)."""
    options = {
        "max_new_tokens": args.max_new_tokens,
        "min_new_tokens": args.min_new_tokens,
        "do_sample": args.sample,
        "num_beams": args.num_beams,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "stop_strings": args.stop or None,
    }
    if args.sample:
        options.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    return {k: v for k, v in options.items() if v is not None}


def text_streamer(tokenizer, out: TextIO):
    """transformers' TextStreamer (new text only, no special tokens) writing to `out` instead of print()."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            out.write(text)
            out.flush()

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def reply(model, tokenizer, turns: list[dict[str, str]], args: argparse.Namespace, stream: TextIO | None = None) -> str:
    """The model's answer to the conversation `turns`, decoded without special tokens; with `stream`, its text is
    also written there as it is generated."""
    import torch

    ids = encode(tokenizer, turns, args.template).to(model.device)  # (1, T)
    if args.sample:
        torch.manual_seed(args.seed)  # transformers samples from torch's global generator
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        tokenizer=tokenizer,  # for stop strings
        streamer=text_streamer(tokenizer, stream) if stream is not None else None,
        **generation_options(args),
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
        stdout.write("student> ")
        answer = reply(model, tokenizer, turns, args, stream=stdout if args.stream else None)
        turns.append({"role": "assistant", "content": answer})
        stdout.write("\n" if args.stream else f"{answer}\n")


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
    parser.add_argument("--min-new-tokens", type=int, default=None, help="no EOS before this many tokens")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0, help="with --sample")
    parser.add_argument("--top-k", type=int, default=None, help="with --sample")
    parser.add_argument("--top-p", type=float, default=None, help="with --sample")
    parser.add_argument("--seed", type=int, default=0, help="with --sample: the same seed gives the same text")
    parser.add_argument("--repetition-penalty", type=float, default=None, help="> 1 discourages repeating tokens")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=None, help="never repeat an n-gram of this size")
    parser.add_argument("--num-beams", type=int, default=None, help="beam search with this many beams")
    parser.add_argument("--stop", action="append", default=[], help="stop after this string (repeatable)")
    parser.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    parser.add_argument("--scan-backend", default=None, help="as saved with the student unless given")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    args = parse(argv)
    if not args.prompt and not args.interactive:
        raise SystemExit("error: give --prompt TEXT (repeatable) or --interactive")
    try:
        model, tokenizer = load(args.ckpt, args.scan_backend)
        for prompt in args.prompt:
            stdout.write(f"prompt> {prompt}\nstudent> ")
            answer = reply(
                model, tokenizer, [{"role": "user", "content": prompt}], args, stdout if args.stream else None
            )
            stdout.write("\n" if args.stream else f"{answer}\n")
        if args.interactive:
            chat(model, tokenizer, args, stdin, stdout)
    except (UserError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
