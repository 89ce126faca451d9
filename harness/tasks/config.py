"""The schema of a task YAML file, validated into dataclasses with errors naming the key.

A task is one YAML file (see ``tasks/*.yaml`` and the README's "Tasks")::

    name: capitals
    family: knowledge_conflict
    version: 2
    description: Capitals of countries, closed-book / agreeing / conflicting context.
    source:
      builder: capitals            # or  file: data/my.jsonl   or  hf: {path: ..., split: ...}
      options: {seed: 0}
    prompt:
      template: "Context: {context}\\nQuestion: {question}\\nAnswer:"
      by_condition:
        closed_book: "Question: {question}\\nAnswer:"
      translations:
        fr: {template: "...", by_condition: {closed_book: "..."}}
    conditions: [closed_book, agreeing, conflicting]
    conjugates: [en, fr, es, de, leetspeak, piglatin]
    scoring:
      modes: [generate, loglikelihood]
      match: contains

Unknown keys, missing fields and wrong types are :class:`~harness.errors.TaskError` naming
the file and the dotted key (:func:`parse_task`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.conjugates import CONJUGATES, ENGLISH, TRANSLATIONS
from harness.errors import TaskError, did_you_mean
from harness.examples import ANSWER_ROLES
from harness.schema import check_type, from_mapping
from harness.scoring import MATCHES, RAW_PREFIX, SCORING_MODES
from harness.scoring.metrics import applicable
from harness.tasks.records import RECORD_FORMATS
from harness.tasks.templates import placeholders

FAMILIES = {
    "knowledge_conflict": "counterfactual-context QA: does the answer follow the context or memory?",
    "fact_recall": "fact recall vs in-context: closed-book, open-book and overriding QA",
    "icl_vs_if": "conjugate prompting: in-context learning vs instruction following",
    "icl_functions": "in-context learning of parameterised functions",
}
#: Field metadata: the option enters a task's content hash only when it differs from its
#: default, so adding an option leaves the hash of every task that does not use it (and the
#: comparability of their earlier results) as it was.
HASHED_WHEN_SET = "hashed_when_set"


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face dataset, read through ``datasets.load_dataset``.

    ``path`` is a hub name (needs the network), a local folder in the hub's layout
    (``data/test-00000-of-00001.parquet``: works offline), or a builder such as ``json`` or
    ``csv`` with ``data_files`` (local paths or the authors' URLs). ``rows``: the number of
    records its publishers state (dataset card, README), which ``harness tasks`` shows
    without downloading anything.
    """

    path: str
    split: str = "test"
    name: str | None = None
    revision: str | None = None
    data_files: str | list[str] | None = None
    rows: int | None = field(default=None, metadata={HASHED_WHEN_SET: True})

    def __str__(self) -> str:
        """``hf:NAME[split]``; for a builder reading files, ``hf:BUILDER:FILE`` (a URL shortened
        to its path, less a pinned commit: ``hf:csv:liujch1998/memo-trap/data/1-proverb-ending.csv``)."""
        if not isinstance(self.data_files, str):
            return f"hf:{self.path}[{self.split}]"
        parts = self.data_files.split("://", 1)[-1].split("/")
        if "://" in self.data_files:
            parts = [part for part in parts[1:] if not re.fullmatch(r"[0-9a-f]{40}", part)]
        return f"hf:{self.path}:{'/'.join(parts)}"


@dataclass(frozen=True)
class Source:
    """Where a task's examples come from: exactly one of ``builder``, ``file``, ``hf``.

    ``format`` says how records of a file or dataset map to examples (:data:`RECORD_FORMATS`);
    ``auto`` detects it from the first record's fields.
    """

    builder: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    hf: HFSource | None = None
    format: str = "auto"


@dataclass(frozen=True)
class Templates:
    """Prompt templates in one language: a default and per-condition overrides."""

    template: str
    by_condition: dict[str, str] = field(default_factory=dict)

    def for_condition(self, condition: str) -> str:
        return self.by_condition.get(condition, self.template)

    def all(self) -> dict[str, str]:
        return {"template": self.template, **{f"by_condition.{k}": v for k, v in self.by_condition.items()}}


@dataclass(frozen=True)
class Prompt:
    """English templates plus hand-written translations (keyed by language code).

    ``add_bos``: whether the tokenizer's leading special tokens (BOS) go before the prompt's
    tokens (the default, as ``add_special_tokens=True`` would); ``false`` for prompts made
    to be read without them (the conjugate-prompting paper's).
    """

    template: str
    by_condition: dict[str, str] = field(default_factory=dict)
    translations: dict[str, Templates] = field(default_factory=dict)
    add_bos: bool = field(default=True, metadata={HASHED_WHEN_SET: True})

    def templates(self, language: str = ENGLISH) -> Templates:
        if language == ENGLISH:
            return Templates(self.template, self.by_condition)
        return self.translations[language]


@dataclass(frozen=True)
class Scoring:
    """How outputs are scored (see :mod:`harness.scoring`).

    ``match``: ``contains`` (the answer occurs in the output), ``prefix`` (the output starts
    with it), ``substring`` (ConFiQA's and FaithEval's rule: a substring of the SQuAD-normalised
    output, no word boundary) or ``raw_prefix`` (the raw output starts with it, the conjugate-prompting
    paper's rule; needs ``case_sensitive: true``). ``accept_english``: on a conjugate prompt,
    also accept the English spellings (the default); ``false``: only the conjugate's own
    spelling counts, as in the paper (a French prompt's answer is ``Combien``, not
    ``What``). ``metrics``: restrict the reported metrics; empty means all that apply.
    """

    modes: list[str] = field(default_factory=lambda: ["generate"])
    match: str = "contains"
    case_sensitive: bool = False
    max_new_tokens: int = 24
    stop: list[str] = field(default_factory=lambda: ["\n"])
    metrics: list[str] = field(default_factory=list)
    accept_english: bool = field(default=True, metadata={HASHED_WHEN_SET: True})


@dataclass(frozen=True)
class TaskConfig:
    """The validated content of one task YAML file."""

    name: str
    family: str
    version: int
    source: Source
    prompt: Prompt
    description: str = ""
    conditions: list[str] = field(default_factory=list)
    conjugates: list[str] = field(default_factory=lambda: [ENGLISH])
    scoring: Scoring = field(default_factory=Scoring)



def parse_task(data: Any, file: str) -> TaskConfig:
    """Validate a task's YAML content (already parsed) into a :class:`TaskConfig`."""
    config = from_mapping(TaskConfig, data, file, TaskError)
    if config.family not in FAMILIES:
        raise TaskError(f"{file}: family: unknown family {config.family!r}{did_you_mean(config.family, FAMILIES)}; "
                        f"expected one of: {', '.join(FAMILIES)}")
    if not config.name.replace("-", "_").isidentifier():
        raise TaskError(f"{file}: name: {config.name!r} must be letters, digits, '_' or '-'")
    source = config.source
    given = [k for k in ("builder", "file", "hf") if getattr(source, k) is not None]
    if len(given) != 1:
        raise TaskError(f"{file}: source: give exactly one of builder, file, hf (got {given or 'none'})")
    if source.builder is not None:
        from harness.data import BUILDERS, builder_option_types  # the builders import the facts: only when named

        if source.builder not in BUILDERS:
            raise TaskError(f"{file}: source.builder: unknown builder {source.builder!r}{did_you_mean(source.builder, BUILDERS)}; "
                            f"known: {', '.join(sorted(BUILDERS))}")
        allowed = builder_option_types(source.builder)
        for key, value in source.options.items():
            if key not in allowed:
                raise TaskError(f"{file}: source.options.{key}: builder {source.builder!r} has no option {key!r} (options: {', '.join(allowed)})")
            check_type(value, allowed[key], f"source.options.{key}", file, TaskError)
    elif source.options:
        raise TaskError(f"{file}: source.options: options go with a builder only")
    if source.format != "auto" and source.format not in RECORD_FORMATS:
        raise TaskError(f"{file}: source.format: unknown format {source.format!r}{did_you_mean(source.format, RECORD_FORMATS)}; "
                        f"expected auto or one of: {', '.join(RECORD_FORMATS)}")
    for mode in config.scoring.modes:
        if mode not in SCORING_MODES:
            raise TaskError(f"{file}: scoring.modes: unknown mode {mode!r}{did_you_mean(mode, SCORING_MODES)}; "
                            f"expected: {', '.join(SCORING_MODES)}")
    if config.scoring.match not in MATCHES:
        raise TaskError(f"{file}: scoring.match: unknown match {config.scoring.match!r}{did_you_mean(config.scoring.match, MATCHES)}; "
                        f"expected: {', '.join(MATCHES)}")
    if config.scoring.match == RAW_PREFIX and not config.scoring.case_sensitive:
        raise TaskError(f"{file}: scoring.case_sensitive: match {RAW_PREFIX!r} compares the raw output, case included; set case_sensitive: true")
    if config.scoring.max_new_tokens < 1:
        raise TaskError(f"{file}: scoring.max_new_tokens: must be at least 1")
    _check_metrics(config, file)
    for conjugate in config.conjugates:
        if conjugate not in CONJUGATES:
            raise TaskError(f"{file}: conjugates: unknown conjugate {conjugate!r}{did_you_mean(conjugate, CONJUGATES)}; "
                            f"expected: {', '.join(CONJUGATES)}")
        if conjugate in TRANSLATIONS and conjugate not in config.prompt.translations:
            raise TaskError(f"{file}: prompt.translations.{conjugate}: missing: conjugate {conjugate!r} needs a hand-written template")
    for language, templates in [(ENGLISH, config.prompt.templates())] + list(config.prompt.translations.items()):
        if language not in TRANSLATIONS and language != ENGLISH:
            raise TaskError(f"{file}: prompt.translations.{language}: unknown language{did_you_mean(language, TRANSLATIONS)}; "
                            f"expected: {', '.join(TRANSLATIONS)}")
        where = "prompt" if language == ENGLISH else f"prompt.translations.{language}"
        for key, template in templates.all().items():
            try:
                placeholders(template)
            except ValueError as error:
                raise TaskError(f"{file}: {where}.{key}: {error}") from None
    return config


def _check_metrics(config: TaskConfig, file: str) -> None:
    known = {m for mode in config.scoring.modes for m in applicable(mode, ANSWER_ROLES)}
    for metric in config.scoring.metrics:
        if metric not in known:
            raise TaskError(f"{file}: scoring.metrics: unknown metric {metric!r}{did_you_mean(metric, known)} for modes {config.scoring.modes}; known: {', '.join(sorted(known))}")
