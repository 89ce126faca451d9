"""From an example to the text a model sees: task template, conjugate, instruction format.

Order of operations (each step a function here)::

    Example --render(task, example, conjugate)--> task prompt + accepted answers
            --apply_format(prompt, fmt)---------> the string sent to the engine
            --generation_request(task, text)----> GenerationRequest
            --loglikelihood_request(text, ...)--> LoglikelihoodRequest

Instruction formats wrap the task prompt the way finetuning data looked: ``plain`` (as is),
``alpaca`` (Stanford Alpaca's ``### Instruction`` / ``### Response`` layout), ``tulu``
(``<|user|>`` / ``<|assistant|>``), and ``chat`` (the tokenizer's own chat template). A run
records the format it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from harness.backends.api import GenerationRequest, LoglikelihoodRequest
from harness.conjugates import ENGLISH, TRANSFORMS, TRANSLATIONS
from harness.errors import did_you_mean
from harness.examples import ANSWER_ROLES, Answers, Example
from harness.tasks import Task, render_template
from harness.tasks.registry import prompt_source

ALPACA = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{prompt}\n\n### Response:\n"
)
TULU = "<|user|>\n{prompt}\n<|assistant|>\n"
FORMATS = ("plain", "alpaca", "tulu", "chat")


def continuation_for(prompt: str, answer: str) -> str:
    """The continuation text to score for ``answer`` after ``prompt``.

    Leading-space rule (decided once, here): prompts never end in a space; when a prompt ends
    in a non-space character (``"Answer:"``) the continuation is the answer with one leading
    space (``" Paris"``), and when it ends in whitespace (``"### Response:\\n"``, chat
    templates) it is the bare answer. Tokenisers treat ``" Paris"`` and ``"Paris"`` as
    different tokens, so getting this wrong changes every log-likelihood.
    """
    answer = answer.strip()
    if not prompt or prompt[-1].isspace():
        return answer
    return " " + answer


@dataclass(frozen=True)
class RenderedExample:
    """An example rendered for one conjugate: the task prompt and the answers scoring accepts.

    ``answers`` lists, per role, the conjugate's own spelling first (the one scored in
    log-likelihood mode) followed by the English spellings, unless the task's scoring says
    ``accept_english: false``.
    """

    example: Example
    conjugate: str
    prompt: str
    answers: Answers


def _merge(first: Answers, then: Answers) -> dict[str, tuple[str, ...]]:
    roles = list(first) + [r for r in then if r not in first]
    return {r: tuple(dict.fromkeys([*first.get(r, ()), *then.get(r, ())])) for r in roles}


def render(task: Task, example: Example, conjugate: str = ENGLISH) -> RenderedExample:
    """The task prompt for ``example`` in ``conjugate`` (before any instruction format).

    Trailing spaces are dropped from the prompt: the answer's leading space belongs to the
    continuation (see :func:`continuation_for`). An example already written in a conjugate
    (``Example.conjugate``) is rendered as written, answers included, and only under that
    conjugate (``ValueError`` for another). On any other conjugate prompt, scoring accepts
    the English spellings after the conjugate's own unless the task's
    ``scoring.accept_english`` is false.
    """
    rendered = _render(task, example, conjugate)
    return RenderedExample(example, conjugate, rendered.prompt.rstrip(" "), rendered.answers)


def _render(task: Task, example: Example, conjugate: str) -> RenderedExample:
    if example.conjugate not in (None, conjugate):
        raise ValueError(f"example {example.id!r} is written in {example.conjugate!r}; "
                         f"it renders under that conjugate only, not {conjugate!r}")
    _, template, values = prompt_source(task, example, conjugate)
    prompt = render_template(template, values)
    if example.conjugate is not None or conjugate == ENGLISH:
        return RenderedExample(example, conjugate, prompt, {r: tuple(s) for r, s in example.answers.items()})
    if conjugate in TRANSLATIONS:
        answers = example.localized[conjugate].answers
    else:
        transform = TRANSFORMS[conjugate]
        prompt = transform(prompt)
        answers = {r: tuple(transform(s) for s in spellings) for r, spellings in example.answers.items()}
    english = example.answers if task.config.scoring.accept_english else {}
    return RenderedExample(example, conjugate, prompt, _merge(answers, english))


def apply_format(prompt: str, fmt: str = "plain", tokenizer: Any = None) -> str:
    """Wrap a task prompt in an instruction format (``chat`` needs the model's tokenizer)."""
    if fmt == "plain":
        return prompt
    if fmt == "alpaca":
        return ALPACA.format(prompt=prompt)
    if fmt == "tulu":
        return TULU.format(prompt=prompt)
    if fmt == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("--format chat: the model's tokenizer has no chat template; use plain, alpaca or tulu")
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    raise ValueError(f"unknown prompt format {fmt!r}{did_you_mean(fmt, FORMATS)}; expected one of: {', '.join(FORMATS)}")


def loglikelihood_roles(answers: Mapping[str, Any]) -> tuple[str, ...]:
    """The roles scored in log-likelihood mode, in a fixed order (each role's first spelling)."""
    return tuple(role for role in ANSWER_ROLES if role in answers)


def generation_request(task: Task, text: str) -> GenerationRequest:
    """The greedy generation request for a formatted prompt under the task's settings."""
    scoring = task.config.scoring
    return GenerationRequest(prompt=text, max_new_tokens=scoring.max_new_tokens, stop=tuple(scoring.stop),
                             add_bos=task.config.prompt.add_bos)


def loglikelihood_request(text: str, answers: Answers, *, add_bos: bool = True) -> LoglikelihoodRequest:
    """One request scoring every answer role after the shared prompt (leading-space rule);
    ``add_bos``: the task's (:class:`harness.tasks.Prompt`)."""
    roles = loglikelihood_roles(answers)
    return LoglikelihoodRequest(
        prompt=text, continuations=tuple(continuation_for(text, answers[role][0]) for role in roles),
        add_bos=add_bos,
    )
