"""A classifier that decides the region offline, from the words that differ.

The source and target descriptions of an edit usually differ in a few words, and *where* those
words sit says which region changes:

- a new noun for the subject ("a cat" -> "a dog"), a new attribute of it ("a white horse" ->
  "a golden horse"), a thing added or removed ("a man" -> "a man with a hat") is a
  **foreground** edit;
- a new place or backdrop ("on grass" -> "on a beach", "white background" -> "marble
  countertop", "... in front of trees" -> "... in front of mountains"), or a new season, weather
  or time of day around the subject, is a **background** edit;
- a new medium or style ("a photo of" -> "a watercolor painting of", "a cartoon dog"), identical
  or unrelated descriptions are **unidentified**: no single region carries the change.

:class:`OfflineClassifier` finds the changed words with a token diff (``difflib``), splits each
description into rough noun phrases (at place prepositions, verbs, "with", "and", "of", commas),
and reads the words with the hand-written lists in ``data/offline_lexicon.txt``. No network, no
key, no model; well under a millisecond per pair. Measured quality: ``docs/classifier-eval.md``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

from .classify import normalize_description
from .types import Classification, Label

__all__ = ["OfflineClassifier", "CLASSIFIER_VERSION"]

CLASSIFIER_VERSION = "offline-v1"

#: what a changed word is about
Kind = Literal["style", "weather", "setting", "object", "pose"]

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:['’\-][a-z0-9]+)*|[,;:]")

#: words that carry no content of their own
_FUNCTION_WORDS = frozenset(
    """a an the some any this that these those its it his her their my our your
    of is are was were be been being am has have had there here very just also which who whom
    whose while as to for from than then so such""".split()
)
#: words that end a noun phrase besides place prepositions and verbs
_PHRASE_BREAKS = frozenset(
    "and or but with of as while that which who , ; : is are was were has have had".split()
)
#: nouns ending in -ing, which would otherwise be read as verbs
_ING_NOUNS = frozenset(
    """building ceiling painting drawing clothing ring earring king string wing evening morning
    pudding icing frosting stuffing wedding sibling duckling seedling swing sling lightning
    railing landing lighting bedding dumpling sapling spring thing rendering""".split()
)
#: verbs that commonly follow the subject; -ing forms are recognised by their ending
_COMMON_VERBS = frozenset(
    """sit sits sat stand stands stood lie lies lay hang hangs hung walk walks walked run runs ran
    ride rides rode hold holds held wear wears wore look looks looked play plays played fly flies
    flew swim swims swam jump jumps jumped eat eats ate drink drinks drank rest rests rested
    lean leans leaned perch perches perched grow grows grew float floats floated""".split()
)
#: words after which a participle is a verb ("covered in snow"), not an adjective
_AFTER_PARTICIPLE = frozenset("in on with by of from under over into onto at".split())
#: plurals that do not mean "more than one" of the singular
_OWN_PLURALS = frozenset({"woods", "glasses", "sunglasses", "clothes", "stairs"})
#: words that make the whole phrase they are in a backdrop
_BACKDROP_WORDS = frozenset({"background", "backdrop", "backround", "scenery", "surroundings"})
_STYLE_WORDS = frozenset({"style", "styled"})
_LONGEST_ENTRY = 4
#: shortest lexicon word whose misspelling with a letter dropped is recognised
_MIN_DROPPED_LETTER_WORD = 7


def _stem(word: str) -> str:
    """Fold the plural so that lexicon entries are written once (trees -> tree, skies -> sky)."""
    if word.endswith(("'s", "’s")):  # possessive: "children's" -> "children"
        word = word[:-2]
    if word in _OWN_PLURALS:
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("ch", "sh", "x", "ss")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _is_content(word: str) -> bool:
    return word not in _FUNCTION_WORDS and word not in _PHRASE_BREAKS


def _looks_like_verb(word: str, next_word: str) -> bool:
    """A cheap stand-in for a part-of-speech tagger: -ing forms, common verbs, and participles
    followed by a preposition ("covered in", "lined with"), not those before a noun ("a snow
    covered path")."""
    if word in _ING_NOUNS:
        return False
    if len(word) > 4 and word.endswith("ed") and next_word in _AFTER_PARTICIPLE:
        return True
    return (len(word) > 4 and word.endswith("ing")) or word in _COMMON_VERBS


class _Lexicon:
    """The word lists of ``data/offline_lexicon.txt``: section name -> set of stemmed entries."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, set[tuple[str, ...]]] = {}
        current: set[tuple[str, ...]] | None = None
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip().lower()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                current = self.sections.setdefault(line[1:-1], set())
            elif current is not None:
                current.add(tuple(_stem(w) for w in _TOKEN_RE.findall(line)))
        # Misspellings of the lexicon's own words ("backgound", "feild", "forrest"): only the
        # slips that rarely make another real word, a letter dropped, doubled or swapped with
        # its neighbour, and only in longer words.
        self._known = {
            entry[0]
            for name in ("setting", "building", "style", "weather")
            for entry in self.sections.get(name, ())
            if len(entry) == 1
        }
        self._misspelt: dict[str, str] = {}
        ambiguous: set[str] = set()
        for word in self._known:
            variants = set(_swapped_neighbours(word)) if len(word) >= 5 else set()
            if len(word) >= _MIN_DROPPED_LETTER_WORD:
                variants |= set(_one_letter_dropped(word))
            for variant in variants - self._known:
                if self._misspelt.setdefault(variant, word) != word:
                    ambiguous.add(variant)
        for variant in ambiguous:
            del self._misspelt[variant]

    @classmethod
    def load(cls) -> "_Lexicon":
        path = resources.files("regionedit").joinpath("data/offline_lexicon.txt")
        return cls(path.read_text(encoding="utf-8"))

    def spell(self, stem: str) -> str:
        """``stem``, or the lexicon word it is a misspelling of."""
        if stem in self._known or len(stem) < 5:
            return stem
        if stem in self._misspelt:
            return self._misspelt[stem]
        if len(stem) >= _MIN_DROPPED_LETTER_WORD:  # a letter too many: "forrest"
            for variant in _one_letter_dropped(stem):
                if variant in self._known:
                    return variant
        return stem

    def mark(self, section: str, stems: list[str]) -> list[bool]:
        """Which positions of ``stems`` fall in an entry of ``section`` (longest entry first).

        Two words written apart also match a one-word entry ("wonder land" -> "wonderland").
        """
        entries = self.sections.get(section, set())
        marked = [False] * len(stems)
        for start in range(len(stems)):
            for length in range(min(_LONGEST_ENTRY, len(stems) - start), 0, -1):
                if tuple(stems[start : start + length]) in entries:
                    marked[start : start + length] = [True] * length
                    break
            else:
                pair = stems[start : start + 2]
                if len(pair) == 2 and min(map(len, pair)) >= 3 and ("".join(pair),) in entries:
                    marked[start : start + 2] = [True, True]
        return marked


def _one_letter_dropped(word: str) -> list[str]:
    return [word[:k] + word[k + 1 :] for k in range(len(word))]


def _swapped_neighbours(word: str) -> list[str]:
    return [word[:k] + word[k + 1] + word[k] + word[k + 2 :] for k in range(len(word) - 1)]


@dataclass
class _Phrase:
    """A rough noun phrase: the words ``start:end`` of a description."""

    start: int
    end: int
    #: opened by a place preposition ("in", "sitting on top of", ...): it says where
    by_preposition: bool
    #: the last content word (the noun, most of the time), if there is one
    head: int | None
    is_setting: bool = False


class _Description:
    """One description, tokenised, split into phrases and annotated with what each word is."""

    def __init__(self, text: str, lexicon: _Lexicon) -> None:
        self.words = _TOKEN_RE.findall(text.lower())
        self.stems = [lexicon.spell(_stem(w)) for w in self.words]
        self.preposition = lexicon.mark("place_preposition", self.stems)
        self.setting = lexicon.mark("setting", self.stems)
        self.building = lexicon.mark("building", self.stems)
        self.style = lexicon.mark("style", self.stems)
        # "living room", "painting": a word of a lexicon entry is not a verb
        self.verb = [
            _looks_like_verb(w, self.words[i + 1] if i + 1 < len(self.words) else "")
            and not (self.setting[i] or self.building[i] or self.style[i])
            for i, w in enumerate(self.words)
        ]
        self.style_modifier = lexicon.mark("style_modifier", self.stems)
        self.weather = lexicon.mark("weather", self.stems)
        self.phrases = self._split_phrases()
        self.phrase_of = [p for p, ph in enumerate(self.phrases) for _ in range(ph.start, ph.end)]
        self._mark_setting_phrases()
        # where the leading style frame ("a black and white photo of") ends: the first content
        # word that is neither a style word nor one that goes with them
        self._style_lead = next(
            (
                i
                for i in range(len(self.words))
                if self._is_content_word(i) and not (self.style[i] or self.style_modifier[i])
            ),
            len(self.words),
        )
        # the first phrase with a noun that does not say where: the subject, most of the time
        self._subject_phrase = next(
            (
                p
                for p, ph in enumerate(self.phrases)
                if ph.head is not None and not ph.by_preposition
            ),
            -1,
        )
        self.kinds: list[Kind | None] = [self._kind(i) for i in range(len(self.words))]

    def _breaks(self, i: int) -> bool:
        return self.preposition[i] or self.verb[i] or self.words[i] in _PHRASE_BREAKS

    def _split_phrases(self) -> list[_Phrase]:
        # A run of break words opens the next phrase: "sitting on top of" starts the phrase it
        # introduces, so that phrase knows it says where the subject is.
        starts = [
            i
            for i in range(len(self.words))
            if i == 0 or (self._breaks(i) and not self._breaks(i - 1))
        ]
        phrases = []
        for start, end in zip(starts, starts[1:] + [len(self.words)]):
            content = [i for i in range(start, end) if self._is_content_word(i)]
            phrases.append(
                _Phrase(
                    start=start,
                    end=end,
                    by_preposition=any(self.preposition[i] for i in range(start, end)),
                    head=content[-1] if content else None,
                )
            )
        return phrases

    def _mark_setting_phrases(self) -> None:
        # A phrase names a setting when its head is a place (or a building the subject is in,
        # on or in front of), when it holds a backdrop word, or when the next phrase is
        # "in the background" ("with mountains in the background").
        for phrase in self.phrases:
            head = phrase.head
            words = range(phrase.start, phrase.end)
            phrase.is_setting = any(self.stems[i] in _BACKDROP_WORDS for i in words) or (
                head is not None
                and (self.setting[head] or (self.building[head] and phrase.by_preposition))
            )
        for phrase, following in zip(self.phrases, self.phrases[1:]):
            idiom = [w for w in self.words[following.start : following.end] if w != "the"]
            if idiom in (["in", "background"], ["in", "distance"]):
                phrase.is_setting = True
        # "the floor of a spaceship", "a field of lavender": what a place is of is the place
        for previous, phrase in zip(self.phrases, self.phrases[1:]):
            if previous.is_setting and self.words[phrase.start : phrase.end][:1] == ["of"]:
                phrase.is_setting = True

    def _is_content_word(self, i: int) -> bool:
        return _is_content(self.words[i]) and not self.preposition[i] and not self.verb[i]

    def names_the_medium(self, i: int) -> bool:
        """Whether style word ``i`` names how the whole picture is made, not a thing in it.

        "a *photo* of a cat", "a *cartoon* dog", "in the style of *van gogh*", ", *digital art*"
        name the medium; "a *painting* on the wall", "a book -> a *painting*" are things.
        """
        if not self.style[i] or _stem(self.words[i]) != self.words[i]:  # "paintings" are things
            return False
        p = self.phrase_of[i]
        phrase = self.phrases[p]
        followed_by_of = phrase.end < len(self.words) and self.words[phrase.end] == "of"
        # a leading frame: "a photo of ...", "pen and ink sketch of ...", "a cartoon dog"
        if i < self._style_lead and (followed_by_of or i != phrase.head):
            return True
        # "in the style of van gogh", "in a low poly style"
        if _STYLE_WORDS & set(self.stems[phrase.start : phrase.end]):
            return True
        previous = self.phrases[p - 1] if p > 0 else None
        if previous is not None and previous.head is not None:
            if self.stems[previous.head] in _STYLE_WORDS and self.words[phrase.start] == "of":
                return True
        # a trailing tag (", digital art") or "in watercolor": style words and nothing else
        opener = [k for k in range(phrase.start, phrase.end) if self._breaks(k)]
        content = [k for k in range(phrase.start, phrase.end) if self._is_content_word(k)]
        return (
            bool(opener)
            and self.words[opener[-1]] in {",", "in", "as", "by"}  # not "in front of"
            and (len(opener) == 1 or not self.preposition[opener[-2]])
            and all(self.style[k] or self.style_modifier[k] for k in content)
        )

    def _kind(self, i: int) -> Kind | None:
        """What word ``i`` is about; None for words that carry no content of their own."""
        if not self._is_content_word(i):
            return None
        if self.names_the_medium(i):
            return "style"
        phrase = self.phrases[self.phrase_of[i]]
        if self.phrase_of[i] == self._subject_phrase and i != phrase.head and not self.weather[i]:
            # the subject itself may be a place ("a calm sea" -> "a rough sea"): a new attribute
            # of the subject is a subject edit; a new noun ("a sea" -> "a forest") is not
            return "object"
        # a place word counts where it heads the phrase, not as a modifier ("street light")
        if phrase.is_setting:
            return "setting"
        return "weather" if self.weather[i] else "object"

    def in_place_phrase(self, i: int) -> bool:
        return self.phrases[self.phrase_of[i]].by_preposition


@dataclass
class _Change:
    """One changed stretch of the diff and what it is about."""

    kind: Kind
    text: str
    #: the change sits in a phrase saying where the subject is ("on a park bench")
    in_place_phrase: bool = False


class OfflineClassifier:
    """Decides foreground / background / unidentified from the words that differ.

    No network, no key, no model: a token diff read with hand-written word lists (see the module
    docstring). Deterministic and thread-safe: after construction it only reads its lexicon, and
    its answer cache is ``functools.lru_cache``, which is safe to call from several threads.

    ``weather`` chooses what a change of season, weather or time of day alone means: by default
    "background" (the sky, light and ground around the subject change, the subject stays), or
    "unidentified" to refuse it as a whole-image change.
    """

    name = "offline"

    def __init__(
        self, *, weather: Literal["background", "unidentified"] = "background"
    ) -> None:
        if weather not in ("background", "unidentified"):
            raise ValueError(f"weather must be 'background' or 'unidentified', not {weather!r}")
        self.weather = weather
        self._lexicon = _Lexicon.load()
        self._decide = lru_cache(maxsize=4096)(self._decide_uncached)

    def classify(self, source: str, target: str) -> Classification:
        """Classify the edit ``source`` -> ``target``.

        Raises :class:`~regionedit.errors.DescriptionError` when a description is empty; a very
        long one is cut (with a warning) like the LLM classifier cuts it.
        """
        source = normalize_description(source, "source")
        target = normalize_description(target, "target")
        label, reason = self._decide(source, target)
        return Classification(
            label=label, reason=reason, source="offline", classifier=CLASSIFIER_VERSION
        )

    def _decide_uncached(self, source: str, target: str) -> tuple[Label, str]:
        src = _Description(source, self._lexicon)
        tgt = _Description(target, self._lexicon)
        src_words = {s for i, s in enumerate(src.stems) if src.kinds[i] or src.verb[i]}
        tgt_words = {s for i, s in enumerate(tgt.stems) if tgt.kinds[i] or tgt.verb[i]}
        if not src_words & tgt_words and len(src_words) >= 2 and len(tgt_words) >= 2:
            return "unidentified", "the descriptions share no word: they describe unrelated images"

        matcher = difflib.SequenceMatcher(None, src.stems, tgt.stems, autojunk=False)
        changes = [
            change
            for tag, i1, i2, j1, j2 in matcher.get_opcodes()
            if tag != "equal"
            for change in [_read_change(src, range(i1, i2), tgt, range(j1, j2))]
            if change is not None
        ]
        what = "; ".join(c.text for c in changes)
        kinds = {c.kind for c in changes}
        if not kinds:
            if _unreadable(source) != _unreadable(target):
                return "unidentified", (
                    "the descriptions differ in words the offline classifier cannot read (it "
                    "reads English); use the LLM classifier or choose the region yourself"
                )
            return "unidentified", "the two descriptions say the same thing"
        if kinds == {"pose"}:
            return "foreground", f"only the subject's pose or position changes ({what})"
        kinds.discard("pose")  # "on the grass" -> "in the water": the place is what matters
        if "style" in kinds:
            return "unidentified", f"a style or medium change affects the whole image ({what})"
        if "weather" in kinds and self.weather == "unidentified":
            return (
                "unidentified",
                f"a season, weather or time-of-day change affects the whole image ({what})",
            )
        if kinds <= {"setting", "weather"}:
            return "background", f"the change is in the setting around the subject ({what})"
        if "setting" in kinds or "weather" in kinds:
            if all(c.kind != "object" or c.in_place_phrase for c in changes):
                # "in a park" -> "on a treadmill in a gym": what the subject is on, at or in
                # changes along with the place, so it is part of the new setting
                return "background", f"the change is in the setting around the subject ({what})"
            return (
                "unidentified",
                f"both the subject and its setting change, so no single region does ({what})",
            )
        return "foreground", f"the change is in the subject ({what})"


def _read_change(
    src: _Description, removed: range, tgt: _Description, added: range
) -> _Change | None:
    """What one changed stretch (source words ``removed`` -> target words ``added``) is about.

    None when nothing visible changes (articles, a corrected spelling).
    """
    text = _describe(src, removed, tgt, added)
    if len(removed) == len(added) and all(
        _same_word_misspelt(src.stems[i], tgt.stems[j]) for i, j in zip(removed, added)
    ):
        return None
    removed_kinds = [k for k in (src.kinds[i] for i in removed) if k]
    added_kinds = [k for k in (tgt.kinds[j] for j in added) if k]
    changed = removed_kinds + added_kinds
    if not changed:
        sides = ((src, removed), (tgt, added))
        moved = any(d.verb[i] or d.preposition[i] for d, span in sides for i in span)
        return _Change("pose", text) if moved else None
    styled = sum(k == "style" for k in changed)
    style_company = sum(
        1
        for d, span in ((src, removed), (tgt, added))
        for i in span
        if d.kinds[i] not in (None, "style") and d.style_modifier[i]
    )
    if styled and 2 * (styled + style_company) >= len(changed):
        return _Change("style", text)
    if not added_kinds:
        # Removing words takes a thing out of the picture ("a man with a hat" -> "a man"),
        # unless what goes is the backdrop or the weather.
        first_removed = next(i for i in removed if src.kinds[i])
        in_place = src.in_place_phrase(first_removed)
        if all(k == "weather" for k in removed_kinds):
            return _Change("weather", text, in_place)
        backdrop = any(src.stems[i] in _BACKDROP_WORDS for i in removed)
        return _Change("setting" if backdrop else "object", text, in_place)
    # The first content word that comes in names the phrase the change is about: "in the sky
    # with stars" is a place, "with a bottle of water" a thing.
    first_added = next(i for i in added if tgt.kinds[i])
    kind = tgt.kinds[first_added]
    assert kind is not None
    in_place = tgt.in_place_phrase(first_added)
    if kind == "object" and removed_kinds and removed_kinds[0] == "setting" and in_place:
        # a thing put where a place was ("in the snow" -> "in the bed") is the new setting
        kind = "setting"
    return _Change(kind, text, in_place)


def _unreadable(text: str) -> list[str]:
    """The letters and digits of ``text`` the tokeniser skips (other scripts, accents)."""
    readable = "abcdefghijklmnopqrstuvwxyz0123456789"
    return [ch for ch in text.casefold() if ch.isalnum() and ch not in readable]


def _same_word_misspelt(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one word, one of them misspelt: equal, or one letter
    dropped or two neighbours swapped ("runing", "chiar"). A letter *replaced* is not taken as
    a typo, it makes other real words too often (horse, house), nor are short words changed
    (bear, beard); a few real pairs remain (plane, planet)."""
    if a == b:
        return True
    if min(len(a), len(b)) < 5:
        return False
    if len(a) == len(b):
        k = next(k for k in range(len(a)) if a[k] != b[k])
        return k + 1 < len(a) and a[:k] + a[k + 1] + a[k] + a[k + 2 :] == b
    short, long_ = sorted((a, b), key=len)
    return len(long_) == len(short) + 1 and any(
        long_[:k] + long_[k + 1 :] == short for k in range(len(long_))
    )


def _describe(src: _Description, removed: range, tgt: _Description, added: range) -> str:
    before = " ".join(src.words[i] for i in removed)
    after = " ".join(tgt.words[i] for i in added)
    if not before:
        return f"adds '{after}'"
    if not after:
        return f"removes '{before}'"
    return f"'{before}' -> '{after}'"
