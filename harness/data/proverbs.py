"""Proverbs with a memorised last word: a MemoTrap-style probe (CF_Quotes in Goyal et al.).

Each prompt asks for a well-known proverb or quotation to end in a given word::

    Write a quote that ends in the word "heavy": Absence makes the heart grow

In the ``conflicting`` condition the requested word is a plausible but wrong ending (same
part of speech as the memorised one, from a word list below); a model that follows the
instruction writes "heavy", one that recites from memory writes "fonder". In the
``agreeing`` condition the requested word is the memorised ending itself.

The proverbs are public-domain sayings and quotations (the oldest centuries old, the
newest from speeches of the early 1900s), written out in this file.
"""

from __future__ import annotations

from typing import Mapping

from harness.seeding import seeded_random, take
from harness.data.registry import builder
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET, Example
from harness.matching import contains

INSTRUCTION = 'Write a quote that ends in the word "{word}":'

# Parts of speech of the memorised endings; a conflicting word is drawn from the same class
# so the requested ending is grammatical and only memory argues against it.
NOUN, NOUNS, ADJ, ADV, VERB, VERB_S, PARTICIPLE, NUMBER, PLACE = (
    "noun", "plural noun", "adjective", "adverb", "verb", "verb (3rd person)", "participle",
    "number", "place",
)

# Substitute endings by part of speech. Nouns start with a consonant so that "a ___" stays
# grammatical ("Rome wasn't built in a ___").
WORDS: Mapping[str, tuple[str, ...]] = {
    NOUN: ("heart", "door", "river", "table", "garden", "window", "bread", "horse", "candle",
           "mountain", "bottle", "letter", "pocket", "village", "shadow", "ladder"),
    NOUNS: ("candles", "windows", "apples", "shoes", "feathers", "mountains", "letters",
            "rivers", "pebbles", "boats"),
    ADJ: ("heavy", "quiet", "bright", "cold", "strange", "gentle", "narrow", "bitter", "pale",
          "loud", "dry"),
    ADV: ("slowly", "quietly", "apart", "tomorrow", "often", "outside", "early", "softly",
          "badly"),
    VERB: ("sing", "sleep", "wander", "smile", "laugh", "whisper", "dance", "rest", "shout",
           "swim"),
    VERB_S: ("sings", "sleeps", "wanders", "smiles", "whistles", "cools", "rests"),
    PARTICIPLE: ("lost", "spent", "borrowed", "forgotten", "broken", "wasted", "hidden"),
    NUMBER: ("seven", "five", "eight", "three", "ten", "four"),
    PLACE: ("Paris", "London", "Athens", "Vienna", "Cairo", "Madrid"),
}

# (prefix, memorised last word, its part of speech)
PROVERBS: tuple[tuple[str, str, str], ...] = (
    ("Absence makes the heart grow", "fonder", ADJ),
    ("Actions speak louder than", "words", NOUNS),
    ("All that glitters is not", "gold", NOUN),
    ("An apple a day keeps the doctor", "away", ADV),
    ("Beauty is in the eye of the", "beholder", NOUN),
    ("Birds of a feather flock", "together", ADV),
    ("Don't count your chickens before they", "hatch", VERB),
    ("Don't judge a book by its", "cover", NOUN),
    ("Every cloud has a silver", "lining", NOUN),
    ("Fortune favors the", "bold", ADJ),
    ("Great minds think", "alike", ADV),
    ("Honesty is the best", "policy", NOUN),
    ("Laughter is the best", "medicine", NOUN),
    ("Look before you", "leap", VERB),
    ("Necessity is the mother of", "invention", NOUN),
    ("Practice makes", "perfect", ADJ),
    ("The early bird catches the", "worm", NOUN),
    ("The pen is mightier than the", "sword", NOUN),
    ("Too many cooks spoil the", "broth", NOUN),
    ("When in Rome, do as the Romans", "do", VERB),
    ("Where there's smoke, there's", "fire", NOUN),
    ("A picture is worth a thousand", "words", NOUNS),
    ("A penny saved is a penny", "earned", PARTICIPLE),
    ("A rolling stone gathers no", "moss", NOUN),
    ("A stitch in time saves", "nine", NUMBER),
    ("All's well that ends", "well", ADV),
    ("Better late than", "never", ADV),
    ("Blood is thicker than", "water", NOUN),
    ("Curiosity killed the", "cat", NOUN),
    ("Don't put all your eggs in one", "basket", NOUN),
    ("Easy come, easy", "go", VERB),
    ("Familiarity breeds", "contempt", NOUN),
    ("Haste makes", "waste", NOUN),
    ("Knowledge is", "power", NOUN),
    ("Let sleeping dogs", "lie", VERB),
    ("Misery loves", "company", NOUN),
    ("Old habits die", "hard", ADV),
    ("Out of sight, out of", "mind", NOUN),
    ("Rome wasn't built in a", "day", NOUN),
    ("The grass is always greener on the other", "side", NOUN),
    ("The squeaky wheel gets the", "grease", NOUN),
    ("Time is", "money", NOUN),
    ("Two heads are better than", "one", NUMBER),
    ("Two wrongs don't make a", "right", NOUN),
    ("United we stand, divided we", "fall", VERB),
    ("What goes around comes", "around", ADV),
    ("You can lead a horse to water, but you can't make it", "drink", VERB),
    ("You reap what you", "sow", VERB),
    ("A watched pot never", "boils", VERB_S),
    ("Barking dogs seldom", "bite", VERB),
    ("Cleanliness is next to", "godliness", NOUN),
    ("Silence is", "golden", ADJ),
    ("The apple doesn't fall far from the", "tree", NOUN),
    ("There's no place like", "home", NOUN),
    ("Variety is the spice of", "life", NOUN),
    ("Money doesn't grow on", "trees", NOUNS),
    ("Strike while the iron is", "hot", ADJ),
    ("Still waters run", "deep", ADJ),
    ("Slow and steady wins the", "race", NOUN),
    ("The road to hell is paved with good", "intentions", NOUNS),
    ("Ignorance is", "bliss", NOUN),
    ("Hope springs", "eternal", ADJ),
    ("Lightning never strikes the same place", "twice", ADV),
    ("Every dog has its", "day", NOUN),
    ("All roads lead to", "Rome", PLACE),
    ("Speak softly and carry a big", "stick", NOUN),
    ("To err is human; to forgive,", "divine", ADJ),
    ("Brevity is the soul of", "wit", NOUN),
    ("A friend in need is a friend", "indeed", ADV),
    ("Charity begins at", "home", NOUN),
    ("Beggars can't be", "choosers", NOUNS),
    ("It takes two to", "tango", VERB),
    ("Kill two birds with one", "stone", NOUN),
    ("People who live in glass houses shouldn't throw", "stones", NOUNS),
    ("The best things in life are", "free", ADJ),
    ("Nothing ventured, nothing", "gained", PARTICIPLE),
    ("Every rose has its", "thorn", NOUN),
    ("Power tends to corrupt, and absolute power corrupts", "absolutely", ADV),
    ("A chain is only as strong as its weakest", "link", NOUN),
    ("Don't cry over spilt", "milk", NOUN),
    ("Fools rush in where angels fear to", "tread", VERB),
    ("Where there's a will, there's a", "way", NOUN),
    ("The bigger they are, the harder they", "fall", VERB),
    ("Idle hands are the devil's", "workshop", NOUN),
    ("Good things come to those who", "wait", VERB),
    ("Early to bed and early to rise makes a man healthy, wealthy, and", "wise", ADJ),
    ("A fool and his money are soon", "parted", PARTICIPLE),
    ("Don't bite off more than you can", "chew", VERB),
    ("Two's company, three's a", "crowd", NOUN),
    ("The proof of the pudding is in the", "eating", NOUN),
    ("A bird in the hand is worth two in the", "bush", NOUN),
    ("Don't look a gift horse in the", "mouth", NOUN),
    ("Many hands make light", "work", NOUN),
    ("Make hay while the sun", "shines", VERB_S),
)


def prompt(prefix: str, word: str) -> str:
    """The MemoTrap instruction asking for ``prefix`` to be completed with ``word``."""
    return f"{INSTRUCTION.format(word=word)} {prefix}"


def substitute_word(prefix: str, memorised: str, kind: str, seed: int) -> str:
    """A seeded ending of part of speech ``kind`` that is neither the memorised word nor in
    the prefix (either would let an output match both answers)."""
    candidates = [
        word for word in WORDS[kind]
        if not contains(prefix, word) and not contains(word, memorised)
        and not contains(memorised, word)
    ]
    return seeded_random(seed, "proverb", prefix).choice(candidates)


def _examples(prefix: str, memorised: str, kind: str, seed: int) -> list[Example]:
    requested = substitute_word(prefix, memorised, kind, seed)
    key = f"proverb:{prefix} {memorised}"
    meta = {"prefix": prefix, "memorised": memorised, "substitute": requested, "kind": kind}
    return [
        Example(
            id=f"{key}:conflicting",
            condition="conflicting",
            fields={"prompt": prompt(prefix, requested)},
            answers={CONTEXT: (requested,), PARAMETRIC: (memorised,)},
            meta=meta,
        ),
        Example(
            id=f"{key}:agreeing",
            condition="agreeing",
            fields={"prompt": prompt(prefix, memorised)},
            answers={TARGET: (memorised,), ALTERNATIVE: (requested,)},
            meta=meta,
        ),
    ]


@builder("proverbs")
def build_proverbs(*, seed: int = 0, limit: int | None = None) -> list[Example]:
    """MemoTrap-style examples: ``conflicting`` and ``agreeing`` for each proverb.

    ``limit`` caps the number of proverbs (a seeded subset); ``seed`` also picks the
    substitute endings. Field: ``prompt``. English only.
    """
    return [
        example
        for prefix, memorised, kind in take(PROVERBS, seed, limit)
        for example in _examples(prefix, memorised, kind, seed)
    ]
