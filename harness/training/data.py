"""Instruction-tuning data: records read into training examples, rendered and tokenised.

- Alpaca layout: records with ``instruction``, ``input`` (optional: the example's *context*)
  and ``output``;
- TULU / UltraChat layout: records with ``messages`` (``role``/``content``; ``system``,
  then alternating ``user``/``assistant``, ending with the ``assistant`` reply trained on).

Files are JSON, JSONL, CSV or Parquet (:func:`harness.tasks.read_records`).

**Prompts.** Training prompts are rendered with :func:`harness.tasks.prompts.apply_format` in the
run's ``format`` (``plain``, ``alpaca``, ``tulu``, ``chat``), so a model is evaluated in the
format it was trained in. An Alpaca record's task prompt is ``prompt_template`` filled with its
``instruction`` and ``input`` (default: the instruction, a blank line, the input), or
``closed_book_template`` when it has no input (default: the instruction alone). Set both to
train in the layout of your probe tasks, e.g. ``context : {input} question : {instruction}
answer :`` and ``question : {instruction} answer :``. The closed-book template may also name
any other text field of the record (``{cue}``), which lets the non-context-critical filter ask
the starting model in the form it knows, when the training layout is new to it. Earlier turns
of a conversation are rendered turn by turn in front of the last one (``chat``: the tokenizer's template over all messages); ``system``
messages lead the prompt. The loss is on the response tokens only: the last reply (earlier
replies are context) plus EOS, or for ``chat`` the template's text of the reply (its
end-of-turn marker included). Tokenisation is the engines' own
(:func:`harness.backends.tokens.encode_pair`), so a response is tokenised in training exactly
as its log-likelihood is scored in evaluation. Sequences longer than ``max_length`` lose
their tail; one left with no response token is dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.backends.tokens import encode_pair
from harness.errors import FinetuneError
from harness.tasks.prompts import apply_format, continuation_for
from harness.tasks import placeholders, read_records, render_template
from harness.training.config import FinetuneConfig

IGNORE_INDEX = -100  # label of tokens without loss (the prompt), as transformers expects


@dataclass(frozen=True)
class TrainingExample:
    """One training example, independent of the prompt format.

    ``input`` is the example's context ("" when it has none): the part the
    non-context-critical filter takes away. ``history`` holds the earlier (user, assistant)
    turns of a conversation, ``record`` the record it was read from (written back when the
    example is filtered out).
    """

    instruction: str
    output: str
    input: str = ""
    history: tuple[tuple[str, str], ...] = ()
    system: str = ""
    record: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _from_messages(messages: Any, where: str, record: Mapping[str, Any]) -> TrainingExample:
    if not isinstance(messages, list) or not all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise FinetuneError(f"{where}: field 'messages': expected a list of {{role, content}} objects")
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    roles = [m["role"] for m in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2):
        raise FinetuneError(f"{where}: field 'messages': expected user and assistant turns in turn, "
                            f"ending with the assistant's reply (got roles: {', '.join(roles) or 'none'})")
    history = tuple((turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 2, 2))
    return TrainingExample(instruction=turns[-2]["content"], output=turns[-1]["content"],
                              history=history, system=system, record=record)


def _from_record(record: Mapping[str, Any], where: str) -> TrainingExample:
    if "messages" in record:
        return _from_messages(record["messages"], where, record)
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise FinetuneError(f"{where}: expected an Alpaca record (instruction, input, output) "
                                f"or a 'messages' list; field {key!r} is missing or not text")
    context = record.get("input") or ""
    if not isinstance(context, str):
        raise FinetuneError(f"{where}: field 'input': expected text, got {context!r}")
    return TrainingExample(instruction=record["instruction"], input=context, output=record["output"],
                              record=record)


def load_instruction_data(path: str | Path) -> list[TrainingExample]:
    """The examples of a local instruction file (Alpaca or ``messages`` records)."""
    path = Path(path)
    records = read_records(path)
    if not records:
        raise FinetuneError(f"{path}: dataset: no records")
    return [_from_record(record, f"{path}: record {number}") for number, record in enumerate(records, 1)]


DEFAULT_TEMPLATES = (FinetuneConfig.prompt_template, FinetuneConfig.closed_book_template)


def _task_prompt(example: TrainingExample, with_context: bool, templates: tuple[str, str]) -> str:
    prompt_template, closed_book_template = templates
    if example.input and with_context:
        return render_template(prompt_template, {"instruction": example.instruction, "input": example.input})
    values = {**{k: v for k, v in example.record.items() if isinstance(v, str)}, "instruction": example.instruction}
    missing = [name for name in placeholders(closed_book_template) if name not in values]
    if missing:
        raise FinetuneError(f"closed_book_template: the record has no text field {missing[0]!r} "
                            f"(record: {json.dumps(dict(example.record))[:200]})")
    return render_template(closed_book_template, values)


def render_example(example: TrainingExample, fmt: str, tokenizer: Any = None, *,
                   with_context: bool = True, templates: tuple[str, str] = DEFAULT_TEMPLATES) -> tuple[str, str]:
    """The (prompt, target) texts of an example in format ``fmt`` (module docstring);
    ``templates`` are the config's ``(prompt_template, closed_book_template)``.

    For formats other than ``chat`` the target is the response with the leading-space rule of
    :func:`harness.tasks.prompts.continuation_for` (EOS is added as a token by :func:`encode_example`).
    """
    prompt_text = _task_prompt(example, with_context, templates)
    if fmt == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise FinetuneError("format chat: the model's tokenizer has no chat template; use plain, alpaca or tulu")
        messages = [{"role": "system", "content": example.system}] if example.system else []
        for user, assistant in example.history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": prompt_text})
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": example.output}],
                                             tokenize=False)
        if not full.startswith(prompt):
            raise FinetuneError("format chat: the chat template renders the conversation differently with the "
                                "reply appended, so the reply's tokens cannot be told apart; use another format")
        return prompt, full[len(prompt):]
    prompt = example.system + "\n\n" if example.system else ""
    for user, assistant in example.history:
        turn = apply_format(user, fmt, tokenizer)
        prompt += turn + continuation_for(turn, assistant) + "\n\n"
    prompt += apply_format(prompt_text, fmt, tokenizer)
    return prompt, continuation_for(prompt, example.output)


def encode_example(tokenizer: Any, prompt: str, target: str, *, add_eos: bool,
                   max_length: int) -> dict[str, list[int]] | None:
    """Token ids, attention mask and labels (prompt tokens ignored) of one training sequence,
    cut to ``max_length``; None when no target token is left."""
    pair = encode_pair(tokenizer, prompt, target)
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    ids = [*pair.context, *pair.continuation, *eos][:max_length]
    n_prompt = len(pair.context)
    if len(ids) <= n_prompt:
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [IGNORE_INDEX] * n_prompt + ids[n_prompt:]}


def encode_training_example(example: TrainingExample, config: FinetuneConfig, tokenizer: Any, *,
            with_context: bool = True) -> dict[str, list[int]] | None:
    prompt, target = render_example(example, config.format, tokenizer, with_context=with_context,
                                    templates=(config.prompt_template, config.closed_book_template))
    # The chat template ends the reply itself; ``add_eos: false`` trains the response tokens
    # alone (the demo's one-token answers).
    add_eos = config.add_eos and config.format != "chat"
    return encode_example(tokenizer, prompt, target, add_eos=add_eos, max_length=config.max_length)
