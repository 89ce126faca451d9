"""In-context learning of parameterised functions (Jin et al. 2023).

Each example shows ``n_exemplars`` labelled points of one random binary function of a
``dim``-dimensional input and asks for the label of a query point; the model can only
answer above chance by inferring the function from the exemplars, never from memory.
Three function classes, one condition each:

``linear``
    a linear classifier ``sign(w·x + b)``;
``mlp``
    a random 2-layer ReLU network whose output is thresholded at its median;
``tree``
    a random complete decision tree of depth 2 or 3 over the coordinates.

Prompt layout (numbers with 2 decimals, one exemplar a line, the query last)::

    x = 0.52, -1.30, 0.07, 2.11 -> label: red
    ...
    x = -0.44, 0.91, 1.02, -0.15 -> label:
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from harness.data.registry import builder
from harness.examples import ALTERNATIVE, TARGET, Example

# The two labels: common words that are one token each, with or without a leading space, in
# the usual tokenisers (so their log-likelihoods compare fairly), and that carry no truth or
# sentiment prior the way "yes"/"no" or "positive"/"negative" do. Not "A"/"B": scoring
# normalisation drops the article "a", so an answer "A" could never match; not "0"/"1",
# which read like one more number of the input.
POSITIVE, NEGATIVE = "red", "blue"
LABELS = (POSITIVE, NEGATIVE)

FUNCTIONS = ("linear", "mlp", "tree")

# A sampled function is accepted only if the share of POSITIVE points on a probe sample
# lies in this band: a near-constant function would let a constant guess score well on
# the exemplars and teach nothing about the function.
_BALANCE_BAND = (0.3, 0.7)
_PROBE_POINTS = 2000
_MLP_HIDDEN = 8


@dataclass(frozen=True)
class Function:
    """A binary function of the input: POSITIVE where ``score(x) > 0``, else NEGATIVE.

    Attributes:
        name: its class (``linear``, ``mlp``, ``tree``).
        score: maps an ``(n, dim)`` array of points to ``n`` real scores.
        params: its weights and thresholds as plain (JSON-serialisable) lists and numbers.
    """

    name: str
    score: Callable[[np.ndarray], np.ndarray]
    params: Mapping[str, Any]

    def labels(self, points: np.ndarray) -> list[str]:
        """The label of each row of ``points``."""
        return [POSITIVE if s > 0 else NEGATIVE for s in self.score(points)]


def linear_classifier(weights: list[float], bias: float) -> Function:
    """The linear classifier POSITIVE iff ``weights · x + bias > 0``."""
    w = np.asarray(weights, dtype=float)
    return Function(
        "linear",
        lambda x: x @ w + bias,
        {"weights": w.tolist(), "bias": float(bias)},
    )


def mlp_classifier(
    hidden_weights: list[list[float]],
    hidden_bias: list[float],
    output_weights: list[float],
    threshold: float,
) -> Function:
    """POSITIVE iff ``output_weights · relu(hidden_weights @ x + hidden_bias) > threshold``."""
    w1 = np.asarray(hidden_weights, dtype=float)
    b1 = np.asarray(hidden_bias, dtype=float)
    w2 = np.asarray(output_weights, dtype=float)
    return Function(
        "mlp",
        lambda x: np.maximum(x @ w1.T + b1, 0.0) @ w2 - threshold,
        {
            "hidden_weights": w1.tolist(),
            "hidden_bias": b1.tolist(),
            "output_weights": w2.tolist(),
            "threshold": float(threshold),
        },
    )


def tree_classifier(features: list[int], thresholds: list[float], leaves: list[str]) -> Function:
    """A complete binary decision tree, nodes in heap order.

    Internal node ``i`` sends a point to child ``2i + 1`` when ``x[features[i]] <=
    thresholds[i]`` and to ``2i + 2`` otherwise; there are ``len(features)`` internal nodes
    and ``len(features) + 1`` leaves, each labelled POSITIVE or NEGATIVE.
    """
    if len(thresholds) != len(features) or len(leaves) != len(features) + 1:
        raise ValueError("a complete tree has n internal nodes, n thresholds and n + 1 leaves")
    leaf_scores = np.array([1.0 if leaf == POSITIVE else -1.0 for leaf in leaves])

    def score(x: np.ndarray) -> np.ndarray:
        node = np.zeros(len(x), dtype=int)
        # Walk every point down one level at a time until all are past the internal nodes.
        while (inside := node < len(features)).any():
            rows = np.flatnonzero(inside)
            at = node[rows]
            goes_right = x[rows, np.asarray(features)[at]] > np.asarray(thresholds)[at]
            node[rows] = 2 * at + 1 + goes_right
        return leaf_scores[node - len(features)]

    return Function(
        "tree",
        score,
        {"features": list(map(int, features)), "thresholds": list(map(float, thresholds)),
         "leaves": list(leaves)},
    )


def _sample_linear(rng: np.random.Generator, dim: int, probe: np.ndarray) -> Function:
    return linear_classifier(rng.normal(size=dim).tolist(), float(rng.normal(scale=0.5)))


def _sample_mlp(rng: np.random.Generator, dim: int, probe: np.ndarray) -> Function:
    hidden_weights = rng.normal(size=(_MLP_HIDDEN, dim))
    hidden_bias = rng.normal(size=_MLP_HIDDEN)
    output_weights = rng.normal(size=_MLP_HIDDEN)
    # Thresholding at the median over the probe sample balances the two labels by design.
    untied = mlp_classifier(hidden_weights, hidden_bias, output_weights, 0.0)
    threshold = float(np.median(untied.score(probe)))
    return mlp_classifier(hidden_weights, hidden_bias, output_weights, threshold)


def _sample_tree(rng: np.random.Generator, dim: int, probe: np.ndarray) -> Function:
    depth = int(rng.integers(2, 4))
    n_internal = 2**depth - 1
    features = rng.integers(0, dim, size=n_internal).tolist()
    # Inputs are standard normal: thresholds near 0 keep most leaves reachable.
    thresholds = rng.normal(scale=0.5, size=n_internal).tolist()
    leaves = [LABELS[i] for i in rng.integers(0, 2, size=n_internal + 1)]
    return tree_classifier(features, thresholds, leaves)


_SAMPLERS: dict[str, Callable[[np.random.Generator, int, np.ndarray], Function]] = {
    "linear": _sample_linear,
    "mlp": _sample_mlp,
    "tree": _sample_tree,
}


def _points(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Standard normal points rounded to the 2 decimals the prompt shows.

    Labels are computed on the rounded values so they agree with the text the model reads;
    adding 0.0 turns -0.0 into 0.0 so no coordinate prints as "-0.00".
    """
    return np.round(rng.normal(size=(n, dim)), 2) + 0.0


def sample_function(name: str, rng: np.random.Generator, dim: int) -> Function:
    """A random function of class ``name`` whose labels are roughly balanced.

    Draws are rejected until the POSITIVE share on a probe sample lies within
    ``_BALANCE_BAND``.
    """
    low, high = _BALANCE_BAND
    while True:
        probe = _points(rng, _PROBE_POINTS, dim)
        function = _SAMPLERS[name](rng, dim, probe)
        share = float(np.mean(function.score(probe) > 0))
        if low <= share <= high:
            return function


def format_point(point: np.ndarray) -> str:
    """``"x = 0.52, -1.30, 0.07, 2.11 -> label:"`` for one point (no trailing space)."""
    return "x = " + ", ".join(f"{v:.2f}" for v in point) + " -> label:"


def make_prompt(
    function: Function, exemplars: np.ndarray, query: np.ndarray
) -> tuple[str, str]:
    """The prompt (labelled exemplars, then the unlabelled query) and the query's label."""
    lines = [
        f"{format_point(p)} {label}" for p, label in zip(exemplars, function.labels(exemplars))
    ]
    lines.append(format_point(query))
    return "\n".join(lines), function.labels(query[None, :])[0]


def _draw_exemplars(
    rng: np.random.Generator, function: Function, n: int, dim: int
) -> np.ndarray:
    """``n`` points on which ``function`` gives both labels (redrawn until it does)."""
    while True:
        points = _points(rng, n, dim)
        if len(set(function.labels(points))) == len(LABELS):
            return points


def _draw_query(rng: np.random.Generator, function: Function, label: str, dim: int) -> np.ndarray:
    """A point that ``function`` labels ``label``."""
    while True:
        point = _points(rng, 1, dim)
        if function.labels(point)[0] == label:
            return point[0]


@builder("icl_functions")
def build(
    *,
    seed: int = 0,
    limit: int | None = None,
    n_per_function: int = 50,
    dim: int = 4,
    n_exemplars: int = 32,
) -> list[Example]:
    """ICL of random linear / MLP / tree classifiers: ``n_per_function`` examples per class.

    Each example draws a fresh function. Query labels alternate red, blue, red, ... within a
    class, so a constant guess scores 50% (exactly, for even ``n_per_function``); the
    exemplars always contain both labels. Examples are interleaved across classes
    (``linear:0, mlp:0, tree:0, linear:1, ...``) so ``limit`` keeps the classes balanced.
    Every class has its own random stream, so ``linear:i`` does not depend on the others.
    """
    if dim < 1 or n_exemplars < 2 or n_per_function < 0 or (limit is not None and limit < 0):
        raise ValueError(
            "icl_functions needs dim >= 1, n_exemplars >= 2, n_per_function >= 0, limit >= 0"
        )
    rngs = {name: np.random.default_rng([seed, k]) for k, name in enumerate(FUNCTIONS)}
    examples = []
    for i in range(n_per_function):
        for name in FUNCTIONS:
            rng = rngs[name]
            function = sample_function(name, rng, dim)
            exemplars = _draw_exemplars(rng, function, n_exemplars, dim)
            query = _draw_query(rng, function, LABELS[i % 2], dim)
            prompt, label = make_prompt(function, exemplars, query)
            examples.append(
                Example(
                    id=f"{name}:{i}",
                    condition=name,
                    fields={"prompt": prompt},
                    answers={
                        TARGET: (label,),
                        ALTERNATIVE: (NEGATIVE if label == POSITIVE else POSITIVE,),
                    },
                    meta={"function": name, "params": dict(function.params)},
                )
            )
    return examples[:limit] if limit is not None else examples
