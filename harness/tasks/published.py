"""The field's context-reliance benchmarks, read in the layouts their authors publish.

Each function turns one record of a published file into examples; :mod:`harness.tasks.records`
registers them as record formats beside the papers' own layouts. The field names below were
read from the authors' cards and code (cited per layout); the built-in tasks of ``tasks/``
(``confiqa_*``, ``faitheval_*``) load them through ``datasets``.

``confiqa``
    ConFiQA (Bi et al. 2024, *Context-DPO*, arXiv:2412.15280; the files ``ConFiQA/ConFiQA-
    {QA,MR,MC}.json`` of github.com/byronBBL/Context-DPO, described in its README): a JSON
    list of records with ``question``, ``cf_context`` (the counterfactual passage), ``cf_answer``
    and ``orig_answer`` with their alias lists ``cf_alias`` / ``orig_alias``, and
    ``orig_context`` (the factual passage). Each record gives a ``conflicting`` item (the
    counterfactual passage: context answer ``cf_answer``, memorised answer ``orig_answer``,
    aliases accepted as the authors' ``evaluation.py`` accepts them) and, when
    ``orig_context`` is there, an ``agreeing`` one (the factual passage, target ``orig_answer``).
``faitheval_counterfactual``
    FaithEval's counterfactual subset (Ming et al. 2024, arXiv:2410.03727; hub
    ``Salesforce/FaithEval-counterfactual-v1.0``, split ``test``): ``id``, ``context``,
    ``question``, ``choices`` (``{"label": [...], "text": [...]}``) and ``answerKey``, the
    label of the option the counterfactual context supports. One ``conflicting`` item; its
    target is that option's text, the prompt lists the options (``{options}``).
``faitheval_unanswerable``, ``faitheval_inconsistent``
    FaithEval's other subsets (hub ``Salesforce/FaithEval-{unanswerable,inconsistent}-v1.0``):
    ``qid``, ``context``, ``question`` (and the source dataset's ``answers``, which the
    authors do not score). The right answer is to abstain: the target spellings are the
    phrases the authors' README counts (its default, ``strict_match = False``):
    :data:`ABSTAIN_UNANSWERABLE` and :data:`ABSTAIN_INCONSISTENT`, matched as substrings of
    the normalised output (``match: substring``), so "cannot" counts through its "not" as it
    does for them.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.errors import TaskError
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET, Example
from harness.tasks.fields import answer_list, record_id, require

#: What FaithEval's README counts as the right answer on an unanswerable context
#: (``valid_phrases`` with ``strict_match = False``) and on an inconsistent one.
ABSTAIN_UNANSWERABLE = ("unknown", "no answer", "no information", "not", "unclear")
ABSTAIN_INCONSISTENT = ("conflict", "multiple answers", "disagreement", "inconsistent", "contradictory",
                        "contradiction", "inconsistency", "two answers", "2 answers", "conflicting")


def _with_aliases(record: Mapping[str, Any], answer: str, aliases: str, where: str) -> tuple[str, ...]:
    """An answer and its alias list, as ConFiQA's ``evaluation.py`` joins them."""
    spellings = answer_list(record[answer], f"{where}: field {answer!r}")
    extra = record.get(aliases) or []
    if extra:
        spellings += answer_list(extra, f"{where}: field {aliases!r}")
    return tuple(dict.fromkeys(spellings))


def from_confiqa(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """ConFiQA (module docstring): a conflicting item, and an agreeing one with ``orig_context``."""
    require(record, ("question", "cf_context", "cf_answer", "orig_answer"), where)
    counterfactual = _with_aliases(record, "cf_answer", "cf_alias", where)
    original = _with_aliases(record, "orig_answer", "orig_alias", where)
    item, question = record_id(record, number), str(record["question"])
    examples = [Example(id=item, condition="conflicting",
                        fields={"context": str(record["cf_context"]), "question": question},
                        answers={CONTEXT: counterfactual, PARAMETRIC: original})]
    if record.get("orig_context"):
        examples.append(Example(id=item, condition="agreeing",
                                fields={"context": str(record["orig_context"]), "question": question},
                                answers={TARGET: original, ALTERNATIVE: counterfactual}))
    return examples


def _choices(record: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    choices = record["choices"]
    if not isinstance(choices, Mapping) or not isinstance(choices.get("label"), list) \
            or not isinstance(choices.get("text"), list) or len(choices["label"]) != len(choices["text"]):
        raise TaskError(f"{where}: field 'choices': expected {{\"label\": [...], \"text\": [...]}} of equal length")
    return [(str(label), str(text)) for label, text in zip(choices["label"], choices["text"])]


def from_faitheval_counterfactual(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """FaithEval counterfactual (module docstring): the option the context supports is the target."""
    require(record, ("context", "question", "choices", "answerKey"), where)
    choices = _choices(record, where)
    key = str(record["answerKey"]).strip()
    texts = dict(choices)
    if key not in texts:
        raise TaskError(f"{where}: field 'answerKey': {key!r} is not one of the choices' labels ({', '.join(texts)})")
    options = "\n".join(f"{label}. {text}" for label, text in choices)
    return [Example(id=record_id(record, number), condition="conflicting",
                    fields={"context": str(record["context"]), "question": str(record["question"]), "options": options},
                    answers={TARGET: answer_list(texts[key], f"{where}: the text of choice {key!r}")},
                    meta={"answerKey": key})]


def _abstention(condition: str, phrases: tuple[str, ...]):
    def convert(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
        require(record, ("context", "question"), where)
        return [Example(id=str(record.get("qid", record_id(record, number))), condition=condition,
                        fields={"context": str(record["context"]), "question": str(record["question"])},
                        answers={TARGET: phrases})]

    convert.__doc__ = f"FaithEval {condition} (module docstring): abstaining is the right answer."
    return convert


from_faitheval_unanswerable = _abstention("unanswerable", ABSTAIN_UNANSWERABLE)
from_faitheval_inconsistent = _abstention("inconsistent", ABSTAIN_INCONSISTENT)
