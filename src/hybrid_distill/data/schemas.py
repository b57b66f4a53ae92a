"""Row schemas shared by every chat / preference source, with validation that fails on the
first bad row with one sentence naming the source, row index and field.

- chat (UltraChat style): `{"messages": [{"role": ..., "content": ...}, ...]}` with at least one
  non-empty assistant turn.
- preference (UltraFeedback style): `{"prompt": str, "chosen": ..., "rejected": ...}` where chosen
  and rejected are either full conversations (prompt turns + a final assistant turn) or plain
  response strings; both normalise to conversations sharing the same prompt turns.
"""

from collections.abc import Sequence

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


class DataRowError(ValueError):
    """A dataset row that does not match its schema; the message names source, row and field."""

    def __init__(self, source: str, index: int, problem: str):
        super().__init__(f"row {index} of {source}: {problem}")


def require_columns(column_names: Sequence[str], required: Sequence[str], source: str) -> None:
    missing = [c for c in required if c not in column_names]
    if missing:
        raise ValueError(f"{source} has no column {missing[0]!r} (columns: {list(column_names)})")


def validate_messages(messages, field: str, source: str, index: int) -> list[Message]:
    """`messages` as a clean list of `{"role", "content"}` dicts; user and assistant turns must be
    non-empty and there must be an assistant turn."""
    if messages is None:
        raise DataRowError(source, index, f"{field!r} is missing")
    if not isinstance(messages, list) or not messages:
        raise DataRowError(source, index, f"{field!r} must be a non-empty list of messages, got {messages!r:.80}")
    clean = []
    for turn, message in enumerate(messages):
        where = f"'{field}[{turn}]"
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role not in ROLES:
            raise DataRowError(source, index, f"{where}.role' is {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataRowError(source, index, f"{where}.content' is missing or not a string")
        if role != "system" and not content.strip():
            raise DataRowError(source, index, f"{where}.content' ({role}) is empty")
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in clean):
        raise DataRowError(source, index, f"{field!r} has no assistant turn")
    return clean


def normalise_chat_row(row: dict, index: int, source: str) -> dict:
    return {"messages": validate_messages(row["messages"], "messages", source, index)}


def _ending_in_answer(value, field: str, source: str, index: int) -> list[Message]:
    conversation = validate_messages(value, field, source, index)
    if conversation[-1]["role"] != "assistant":
        raise DataRowError(source, index, f"{field!r} does not end with an assistant turn")
    return conversation


def _as_conversation(value, field: str, prompt_messages: list[Message], source: str, index: int) -> list[Message]:
    """A chosen/rejected value (response string or conversation) as a conversation that starts
    with `prompt_messages` and ends with the assistant's answer."""
    if isinstance(value, str):
        if not value.strip():
            raise DataRowError(source, index, f"{field!r} is empty")
        return [*prompt_messages, {"role": "assistant", "content": value}]
    conversation = _ending_in_answer(value, field, source, index)
    if conversation[:-1] != prompt_messages:
        raise DataRowError(source, index, f"{field!r} does not start with the same prompt turns as 'chosen'/'prompt'")
    return conversation


def normalise_preference_row(row: dict, index: int, source: str) -> dict:
    """`{"prompt": str, "chosen": conversation, "rejected": conversation}` from either layout;
    the prompt turns come from `chosen` when it is a conversation, else from `prompt`."""
    chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
    for field, value in (("chosen", chosen), ("rejected", rejected)):
        if value is None:
            raise DataRowError(source, index, f"{field!r} is missing")
    if isinstance(chosen, list):
        chosen = _ending_in_answer(chosen, "chosen", source, index)
        prompt_messages = chosen[:-1]
        if not any(m["role"] == "user" for m in prompt_messages):
            raise DataRowError(source, index, "'chosen' has no user turn before its final assistant turn")
        prompt = prompt if isinstance(prompt, str) and prompt.strip() else prompt_messages[-1]["content"]
    elif not isinstance(prompt, str) or not prompt.strip():
        raise DataRowError(source, index, "'prompt' is missing or empty (needed when 'chosen' is a string)")
    else:
        prompt_messages = [{"role": "user", "content": prompt}]
        chosen = _as_conversation(chosen, "chosen", prompt_messages, source, index)
    rejected = _as_conversation(rejected, "rejected", prompt_messages, source, index)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def prompt_turns(messages: list[Message]) -> list[Message]:
    """The turns before the last assistant turn: what a model is asked to continue."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def with_responses(prompts: Sequence[list[Message]], responses: Sequence[str]) -> list[dict]:
    """Chat rows whose final assistant turn is `responses[i]` (e.g. teacher pseudo-labels for
    sequence-level KD) after the prompt turns `prompts[i]`."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return [{"messages": [*p, {"role": "assistant", "content": r}]} for p, r in zip(prompts, responses)]
