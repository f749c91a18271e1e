"""A classifier that decides the region offline, from the words that differ and where they sit.

The photo has two regions: the main subject (what the segmenter cuts out) and everything else.
The main subject is usually the grammatical subject of the source description ("a dog lying on
the grass": the dog). :mod:`regionedit._offline_grammar` reads each description into roles
(the subject, what is attached to it, its pose, the scene around it, the medium, the framing)
and a word diff (``difflib``) finds what changed. Then:

- a change on the subject, on what it wears or holds or on its pose ("a cat" -> "a dog", "a
  white car" -> "a red car", "a man" -> "a man with a hat") is **foreground**, and so is
  removing the subject ("a sailboat on a lake" -> "a lake");
- a change anywhere else is **background**: the place, the ground, walls, the sky, the weather
  around an unchanged subject, and any other thing, added, removed or changed ("a red apple" ->
  "a red apple and a bird": the apple stays the subject, the bird joins the scene);
- a new medium or style, camera framing, time of day or light, a change of both the subject and
  what is around it, identical or unrelated descriptions are **unidentified**.

For a foreground edit it also says whether the new subject still fits the old outline
(``shape``): another noun in the subject's place, a new pose, a new size or shape, something
worn or held added, removed or swapped, and the subject removed are ``"change"``; a colour,
material, expression or marking is ``"keep"``.

No network, no key, no model; well under a millisecond per pair. Measured quality:
``docs/classifier-eval.md``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

from ._offline_grammar import Description, Lexicon, Role
from .types import Classification, Label, Shape, normalize_description

__all__ = ["OfflineClassifier", "CLASSIFIER_VERSION"]

CLASSIFIER_VERSION = "offline-v2"

_SUBJECT_SIDE = frozenset({"subject", "part", "pose"})
_SCENE_SIDE = frozenset({"scene", "weather"})

class _Decision(NamedTuple):
    label: Label
    reason: str
    subject: str
    shape: Shape

@dataclass
class _Change:
    """One changed stretch of the diff: source words ``removed`` became target words ``added``."""

    roles: set[Role]
    text: str
    removed: range
    added: range

class OfflineClassifier:
    """Decides foreground / background / unidentified from the words that differ.

    No network, no key, no model: a token diff read with a light grammar and hand-written word
    lists (see the module docstring). Deterministic and thread-safe: after construction it only
    reads its lexicon, and its answer cache is ``functools.lru_cache``, which is safe to call
    from several threads.

    ``weather`` chooses what a change of season or weather alone means: by default
    "background" (the sky, light and ground around the subject change, the subject stays), or
    "unidentified" to refuse it as a whole-image change. A new time of day or light is always
    unidentified: it relights every pixel.
    """

    name = "offline"

    def __init__(
        self, *, weather: Literal["background", "unidentified"] = "background"
    ) -> None:
        if weather not in ("background", "unidentified"):
            raise ValueError(f"weather must be 'background' or 'unidentified', not {weather!r}")
        self.weather = weather
        self._lexicon = Lexicon.load()
        self._decide = lru_cache(maxsize=4096)(self._decide_uncached)

    def classify(self, source: str, target: str) -> Classification:
        """Classify the edit ``source`` -> ``target``.

        Raises :class:`~regionedit.errors.DescriptionError` when a description is empty; a very
        long one is cut (with a warning) like the LLM classifier cuts it.
        """
        source = normalize_description(source, "source")
        target = normalize_description(target, "target")
        decision = self._decide(source, target)
        return Classification(
            label=decision.label,
            reason=decision.reason,
            source="offline",
            classifier=CLASSIFIER_VERSION,
            subject=decision.subject,
            shape=decision.shape,
        )

    def _decide_uncached(self, source: str, target: str) -> _Decision:
        src = Description(source, self._lexicon)
        tgt = Description(target, self._lexicon)
        subject = _short(src.subject_text)
        the_subject = f"the main subject ('{subject}')" if subject else "the main subject"
        said = [_content_stems(src), _content_stems(tgt)]
        if not said[0] & said[1] and len(said[0]) >= 2 and len(said[1]) >= 2:
            reason = "the descriptions share no word: they describe unrelated images"
            return _Decision("unidentified", reason, subject, "keep")

        before, after = src.subject_heads, tgt.subject_heads
        if before and before < after:
            # "a red apple" -> "a red apple and a bird": the apple is still the subject; the
            # bird is another thing, painted into the scene around it
            _demote(tgt, after - before)
        changes = _changes(src, tgt)
        what = "; ".join(c.text for c in changes)
        roles = set().union(*(c.roles for c in changes)) if changes else set()

        def decision(label: Label, reason: str, shape: Shape = "keep") -> _Decision:
            return _Decision(label, f"{reason} ({what})" if what else reason, subject, shape)

        if "light" in roles and roles & _SCENE_SIDE:
            # "on a studio backdrop" -> "on a beach at sunset": a new place comes with its
            # own light; the subject stays
            roles = (roles - {"light"}) | {"scene"}
        for role, reason in (
            ("style", "a style or medium change affects the whole image"),
            ("view", "a new camera view or framing affects the whole image"),
            ("light", "a new time of day or light affects the whole image"),
        ):
            if role in roles:
                return decision("unidentified", reason)
        if before and after and not before & after and after <= said[0]:
            # "a sailboat on a lake" -> "a lake": what was around it is all that is left
            return decision("foreground", f"{the_subject} is removed", "change")
        if after and after < before:
            return decision("foreground", "part of the main subject is removed", "change")
        if before and not before & after and not after & said[0] and _demoted(tgt, before):
            return decision("background", "a new thing is added in front of the old subject")
        if not roles:
            if _unreadable(source) != _unreadable(target):
                return decision("unidentified", (
                    "the descriptions differ in words the offline classifier cannot read (it "
                    "reads English); use the LLM classifier or choose the region yourself"
                ))
            return decision("unidentified", "the two descriptions say the same thing")

        on_subject = roles & _SUBJECT_SIDE
        around = roles & _SCENE_SIDE
        if on_subject and around:
            if on_subject != {"pose"}:
                return decision(
                    "unidentified",
                    "both the main subject and what is around it change, so no single region does",
                )
            on_subject = set()  # "sitting on the grass" -> "lying in the water": the place moves
        if on_subject:
            return decision(
                "foreground",
                f"the change is on {the_subject}",
                _shape(src, tgt, changes),
            )
        if "weather" in around and (self.weather == "unidentified" or src.landscape):
            # the weather of a landscape photo is the whole photo
            return decision(
                "unidentified",
                "a season, weather or time-of-day change affects the whole image",
            )
        return decision("background", f"the change is around {the_subject}")

def _content_stems(description: Description) -> set[str]:
    return {
        description.stems[i]
        for i in range(len(description.words))
        if description.is_content(i) or description.verb[i]
    }

def _demoted(description: Description, heads: set[str]) -> bool:
    """Whether every noun of ``heads`` is in ``description``, none as its subject."""
    roles = {s: description.role[i] for i, s in enumerate(description.stems)}
    return all(head in roles and roles[head] not in ("subject", "part") for head in heads)


def _demote(description: Description, heads: set[str]) -> None:
    """Give the subject chunks headed by ``heads`` (and what hangs on them) the scene role."""
    demoting = False
    for c, chunk in enumerate(description.chunks):
        if c in description.subject_chunks:
            head = chunk.head
            demoting = head is not None and description.stems[head] in heads
        elif chunk.opener not in ("of",):
            demoting = False
        if demoting:
            for k in range(chunk.start, chunk.end):
                description.role[k] = "scene"
    description.subject_chunks = [
        c for c in description.subject_chunks if description.role[description.chunks[c].start]
        != "scene" or description.chunks[c].head is None
    ]

def _changes(src: Description, tgt: Description) -> list[_Change]:
    """The changed stretches of the word diff and the roles of the words in them."""
    matcher = difflib.SequenceMatcher(None, src.stems, tgt.stems, autojunk=False)
    changes = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed, added = range(i1, i2), range(j1, j2)
        if len(removed) == len(added) and all(
            _same_word_misspelt(src.stems[i], tgt.stems[j]) for i, j in zip(removed, added)
        ):
            continue  # a corrected spelling
        roles = _roles(src, removed) | _roles(tgt, added)
        sides = ((src, removed), (tgt, added))
        if not roles:
            if any(d.words[i] in ("with", "without") for d, span in sides for i in span):
                # "a man with a mustache" -> "a man without a mustache": what it opens goes
                roles = {src.chunks[src.chunk_of[i1]].role} if i1 < len(src.words) else set()
            elif any(d.verb[i] or d.marks["place_preposition"][i] for d, span in sides for i in span):
                roles = {"pose"}  # "on a chair" -> "under a chair": the subject moved
            else:
                continue  # articles and the like
        if _more_of_them(src, removed, tgt, added):
            roles = {"scene"}  # "two dogs" -> "three dogs": one more, beside the two
        changes.append(_Change(roles, _describe(src, removed, tgt, added), removed, added))
    return changes


_NUMBERS = {
    "one": 1, "single": 1, "two": 2, "pair": 2, "couple": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "dozen": 12,
}  # fmt: skip


def _more_of_them(src: Description, removed: range, tgt: Description, added: range) -> bool:
    """Whether the change only raises the number of the subject: the new ones are other
    things beside it, like "a red apple" -> "a red apple and a bird"; fewer is a removal."""
    def number(d: Description, span: range) -> int | None:
        words = [d.words[i] for i in span if d.is_content(i)]
        if len(words) != 1 or words[0] not in _NUMBERS or d.role[span[0]] != "subject":
            return None
        return _NUMBERS[words[0]]

    before, after = number(src, removed), number(tgt, added)
    return before is not None and after is not None and after > before

def _roles(description: Description, span: range) -> set[Role]:
    """The roles of the words in ``span`` that say something (content words and verbs); a place
    that is the subject of a landscape is scene ("a calm sea" -> "a calm lake")."""
    roles: set[Role] = set()
    for i in span:
        if not (description.is_content(i) or description.verb[i]):
            continue
        role = description.role[i]
        if role == "subject" and description.landscape and description.is_("setting", i):
            role = "scene"
        roles.add(role)
    return roles

def _shape(src: Description, tgt: Description, changes: list[_Change]) -> Shape:
    """Whether a foreground edit leaves the subject's outline ("keep") or not ("change")."""
    for change in changes:
        sides = ((src, change.removed), (tgt, change.added))
        posing = [
            d.words[i] for d, span in sides for i in span
            if d.role[i] == "pose" and (d.is_content(i) or d.verb[i])
        ]
        if "pose" in change.roles and not (posing and all(
            d.is_("expression", i) for d, span in sides for i in span if d.role[i] == "pose"
            and (d.is_content(i) or d.verb[i])
        )):
            return "change"  # a new pose; a new expression ("smiling" -> "crying") stays inside
        for d, span in sides:
            for i in span:
                if d.role[i] not in ("subject", "part") or not d.is_content(i):
                    continue
                if _outline_word(d, i):
                    return "change"
                if d.role[i] == "part" and _attached_thing(d, i) and not _inside_outline(d, i):
                    return "change"
        if _head_swapped(src, change.removed, tgt, change.added):
            return "change"
    return "keep"

def _outline_word(d: Description, i: int) -> bool:
    """A size, shape or state word ("round", "tall", "wilted"), or, for the subject itself, a
    number or an -ing word that is no expression ("*two* dogs", "a *kissing* couple"): a new
    one changes the outline."""
    word = d.words[i]
    if d.role[i] != "subject":
        return d.is_("shape_word", i) and word not in _NUMBERS
    participle = word.endswith("ing") and len(word) > 4 and not d.is_("expression", i)
    return d.is_("shape_word", i) or (participle and not d.is_("inside_outline", i))

def _attached_thing(d: Description, i: int) -> bool:
    """Whether word ``i`` names the thing worn, held or attached (the head of its chunk), not
    a word describing it."""
    return d.chunks[d.chunk_of[i]].head == i

def _inside_outline(d: Description, i: int) -> bool:
    """Whether the attached thing word ``i`` belongs to stays inside the subject's outline:
    what it is made of or covered with, or what "in her hair" or "of a tulip" hang on."""
    if d.made_of(i):
        return True
    c = d.chunk_of[i]
    while c > 0 and d.chunks[c].opener in ("of", "prep") and d.chunks[c - 1].role == "part":
        c -= 1
    return d.is_("inside_outline", d.chunks[c].head)

def _head_swapped(src: Description, removed: range, tgt: Description, added: range) -> bool:
    """Whether the noun of the subject is replaced by another ("a cat" -> "a dog"); not when the
    old noun stays as a describing word ("a woman" -> "a woman sculpture"), nor when both are
    colours, or both stay inside the outline (what fills a glass)."""
    old = [i for i in removed if src.role[i] == "subject" and src.chunks[src.chunk_of[i]].head == i]
    new = [j for j in added if tgt.role[j] == "subject" and tgt.chunks[tgt.chunk_of[j]].head == j]
    for i in old:
        for j in new:
            chunk = tgt.chunks[tgt.chunk_of[j]]
            kept = src.stems[i] in tgt.stems[chunk.start : chunk.end]
            # "black" -> "red", "a glass of juice" -> "a glass of milk": same outline
            alike = any(src.is_(kind, i) and tgt.is_(kind, j) for kind in ("colour", "inside_outline"))
            if not kept and not alike:
                return True
    return False

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

def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _describe(src: Description, removed: range, tgt: Description, added: range) -> str:
    before = _short(" ".join(src.words[i] for i in removed))
    after = _short(" ".join(tgt.words[i] for i in added))
    if not before:
        return f"adds '{after}'"
    if not after:
        return f"removes '{before}'"
    return f"'{before}' -> '{after}'"
