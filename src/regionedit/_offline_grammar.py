"""How the offline classifier reads one description: its words, what each names, and the part of
the photo each belongs to.

A description is cut into chunks, each opened by a word that links it to what came before (a
place preposition, a verb, "with", "and", "of", ...). Read left to right, each chunk gets a
**role**, the grammar doing most of the work:

- ``subject``: the main subject, the first noun phrase that does not say where ("a dog" in "a
  dog lying on the grass"), with the phrases coordinated with it ("a camera and a notebook")
  and what it is made of or holds ("a cup of coffee");
- ``part``: what is attached to the subject: worn, held, part of its body ("a woman *with
  glasses*", "a man *in a blue suit*", "*holding a flower*", "with a ribbon *in her hair*");
- ``pose``: the subject's own verbs and the direction it faces ("*sitting*", "looking *at the
  camera*");
- ``scene``: everything else: where the subject is and every other thing in the picture ("on a
  table *with a laptop*", "in front of a fountain");
- ``style`` / ``view``: a leading frame naming the medium or the camera's framing ("a watercolor
  painting of", "an aerial view of").

Word lists (``data/offline_lexicon.txt``) only say what kind of thing a word names: a place,
a piece of clothing, a part of the body, a colour, the weather, a medium.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

__all__ = ["Lexicon", "Description", "Role", "stem"]

#: the part of the photo a word belongs to; the last three are read off the word itself
Role = Literal["style", "view", "subject", "part", "pose", "scene", "weather", "light"]

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:['’\-][a-z0-9]+)*|[,;:&]")

#: words that carry no content of their own
_FUNCTION_WORDS = frozenset(
    """a an the some any this these those its it his her their my our your him them
    he she they we i you me us
    is are was were be been being am has have had there here very just also so such than then
    to for from while as that which who whom whose""".split()
)
_CONJUNCTIONS = frozenset({"and", "or", "but", "&", ",", ";", ":"})
_WITH = frozenset({"with", "without"})
_AUXILIARIES = frozenset("is are was were be been being am has have had".split())
_RELATIVES = frozenset("that which who whom whose while".split())
#: words after which an "-ing" word describes the noun that follows ("a *standing* dog")
_DETERMINERS = frozenset(
    """a an the this that these those his her its their my our your some many several
    one two three four five six seven eight nine ten with""".split()
)
#: nouns ending in -ing, which would otherwise be read as verbs
_ING_NOUNS = frozenset(
    """building ceiling painting drawing clothing ring earring king string wing evening morning
    pudding icing frosting stuffing wedding sibling duckling seedling swing sling lightning
    railing landing lighting bedding dumpling sapling spring thing rendering""".split()
)
#: words after which a participle is a verb ("covered in snow"), not an adjective
_AFTER_PARTICIPLE = frozenset("in on with by of from under over into onto at".split())
#: participles that say what a thing is made of or covered with, not what it does
_DESCRIBING = frozenset(
    """made covered painted wrapped decorated filled topped lined coated carved built drawn
    stuffed""".split()
)
#: verbs of what the subject wears: about the subject wherever they stand
_WEARING = frozenset("wear wears wearing wore worn dressed".split())
#: plurals that do not mean "more than one" of the singular
_OWN_PLURALS = frozenset({"woods", "glasses", "sunglasses", "clothes", "stairs", "pants"})
#: words that make the whole phrase they are in a backdrop
BACKDROP_WORDS = frozenset({"background", "backdrop", "scenery", "surroundings", "bg"})
_STYLE_WORDS = frozenset({"style", "styled"})
#: what a phrase attached to a part can stand on: "with stickers *on them*", "*on top*"
_ON_ITSELF = frozenset({"it", "them", "top", "itself", "themselves", "him", "her"})
#: words that point back to a thing already named ("on *its* head", "on *the* roof")
_DEFINITE = frozenset("the its his her their".split())
_LONGEST_ENTRY = 4
#: shortest lexicon word whose misspelling with a letter dropped is recognised
_MIN_DROPPED_LETTER_WORD = 7
_SECTIONS = (
    "setting", "building", "style", "weather", "light", "view", "direction", "verb", "wearable",
    "body_part", "inside_outline", "shape_word", "expression", "colour", "place_preposition",
)  # fmt: skip


def stem(word: str) -> str:
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


class Lexicon:
    """The word lists of ``data/offline_lexicon.txt``: section name -> set of stemmed entries."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, set[tuple[str, ...]]] = {name: set() for name in _SECTIONS}
        current: set[tuple[str, ...]] | None = None
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip().lower()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                current = self.sections.setdefault(line[1:-1], set())
            elif current is not None:
                current.add(tuple(stem(w) for w in _TOKEN_RE.findall(line)))
        # Misspellings of the lexicon's own words ("backgound", "feild", "forrest"): only the
        # slips that rarely make another real word, a letter dropped, doubled or swapped with
        # its neighbour, and only in longer words.
        self._known = {
            entry[0]
            for name in ("setting", "building", "style", "weather", "light")
            for entry in self.sections[name]
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
    @cache
    def load(cls) -> Lexicon:
        path = resources.files("regionedit").joinpath("data/offline_lexicon.txt")
        return cls(path.read_text(encoding="utf-8"))

    def spell(self, word_stem: str) -> str:
        """``word_stem``, or the lexicon word it is a misspelling of."""
        if word_stem in self._known or len(word_stem) < 5:
            return word_stem
        if word_stem in self._misspelt:
            return self._misspelt[word_stem]
        if len(word_stem) >= _MIN_DROPPED_LETTER_WORD:  # a letter too many: "forrest"
            for variant in _one_letter_dropped(word_stem):
                if variant in self._known:
                    return variant
        return word_stem

    def mark(self, section: str, stems: list[str]) -> list[bool]:
        """Which positions of ``stems`` fall in an entry of ``section`` (longest entry first).

        Two words written apart also match a one-word entry ("sea shore" -> "seashore").
        """
        entries = self.sections[section]
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
class Chunk:
    """The words ``start:end`` of a description: an opening link word or two, then a phrase."""

    start: int
    end: int
    #: what opens it: "start", "prep", "verb", "with", "conj", "of", "aux" or "rel"
    opener: str
    #: its content words, and the last of them (the noun, most of the time)
    content: list[int] = field(default_factory=list)
    head: int | None = None
    role: Role = "scene"


@dataclass
class _Reading:
    """Where a left-to-right reading of the chunks stands."""

    #: the last chunk with content
    previous: Chunk | None = None
    #: no preposition, verb or "with" since the subject: "and" adds to the subject
    in_subject_phrase: bool = True
    #: the chunk just read is a verb alone ("chatting *with friends*")
    after_verb: bool = False


class Description:
    """One description: words, stems, what kind of thing each word names, chunks and roles."""

    def __init__(self, text: str, lexicon: Lexicon) -> None:
        self.words = _TOKEN_RE.findall(text.lower())
        self.stems = [lexicon.spell(stem(w)) for w in self.words]
        self.marks = {name: lexicon.mark(name, self.stems) for name in _SECTIONS}
        self.verb = [self._is_verb(i) for i in range(len(self.words))]
        self.chunks = self._split()
        self.chunk_of = [c for c, ch in enumerate(self.chunks) for _ in range(ch.start, ch.end)]
        self.role: list[Role] = ["scene"] * len(self.words)
        self.subject_chunks: list[int] = []
        self._assign_roles()
        self._mark_words()

    # -- what a word is ------------------------------------------------------------------------

    def is_(self, section: str, i: int | None) -> bool:
        """Whether word ``i`` is part of an entry of lexicon ``section``."""
        return i is not None and self.marks[section][i]

    def is_content(self, i: int) -> bool:
        return self._link(i) is None and self.words[i] not in _FUNCTION_WORDS

    def _is_verb(self, i: int) -> bool:
        """A cheap stand-in for a part-of-speech tagger: -ing forms, common verbs, and
        participles followed by a preposition ("covered in"), not those before a noun ("a snow
        covered path"), nor an -ing word after an article or a preposition that describes the
        noun after it ("a *standing* dog", "in *shining* armor")."""
        word = self.words[i]
        previous = self.words[i - 1] if i else ""
        following = self.words[i + 1] if i + 1 < len(self.words) else ""
        if word in _ING_NOUNS or any(
            self.marks[name][i] for name in ("setting", "building", "style", "wearable")
        ):
            return False
        if (word.endswith("ed") or word in _DESCRIBING) and following in _AFTER_PARTICIPLE:
            return len(word) > 3  # "covered in", "made of"; not "red in"
        if word in _WEARING:
            return True
        if len(word) > 4 and word.endswith("ing"):
            describes = (
                i == 0
                or previous in _DETERMINERS
                or previous.endswith(("'s", "’s"))
                or self.marks["place_preposition"][i - 1]
            )
            noun_follows = bool(following) and following not in _FUNCTION_WORDS and not (
                following in _CONJUNCTIONS | _WITH or following == "of"
                or self.marks["place_preposition"][i + 1]
            )
            return not (describes and noun_follows)
        return self.marks["verb"][i]

    def _link(self, i: int) -> str | None:
        """The kind of link word ``i`` is, or None for a word of a phrase."""
        word = self.words[i]
        if word in _CONJUNCTIONS:
            # "black and white", "pink and blue": one thing of two colours
            between_colours = (
                word == "and" and 0 < i < len(self.words) - 1
                and self.marks["colour"][i - 1] and self.marks["colour"][i + 1]
            )
            return None if between_colours else "conj"
        if word in _WITH:
            return "with"
        if self.marks["place_preposition"][i] or word == "as":
            return "prep"  # before "of": "in front *of*" is one preposition
        if word == "of":
            return "of"
        if word in _AUXILIARIES:
            return "aux"
        if word in _RELATIVES:
            return "rel"
        if self.verb[i]:
            return "verb"
        return None

    # -- chunks and roles ------------------------------------------------------------------------

    def _split(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        for i in range(len(self.words)):
            link = self._link(i)
            opens = i == 0 or (
                link is not None
                and (link != self._link(i - 1) or link in ("conj", "with"))
            )
            if opens:
                chunks.append(Chunk(start=i, end=i + 1, opener=link or "start"))
            else:
                chunks[-1].end = i + 1
        for chunk in chunks:
            chunk.content = [k for k in range(chunk.start, chunk.end) if self.is_content(k)]
            # the noun, not a direction or a state after it ("a horse facing *left*",
            # "with its wings *spread*")
            nouns = list(chunk.content)
            while len(nouns) > 1 and (
                self.marks["direction"][nouns[-1]] or self.marks["shape_word"][nouns[-1]]
            ):
                nouns.pop()
            chunk.head = nouns[-1] if nouns else None
        return chunks

    def _frame_end(self) -> int:
        """How many leading chunks frame the picture: "a watercolor painting of", "an aerial
        view of", a leading tag "anime, ..."; the subject comes after them."""
        for c, chunk in enumerate(self.chunks):
            if chunk.opener not in ("start", "conj", "of"):
                return 0
            if chunk.opener == "of" and c > 0:
                framed = range(0, chunk.start)
                named = any(self.marks["style"][k] or self.marks["view"][k] for k in framed)
                return c if named else 0
            following = self.chunks[c + 1] if c + 1 < len(self.chunks) else None
            tag = (
                c == 0
                and chunk.content
                and all(self.marks["style"][k] for k in chunk.content)
                and following is not None
                and self.words[following.start] == ","
            )
            if tag:
                return 1
        return 0

    def _assign_roles(self) -> None:
        frame = self._frame_end()
        framed = range(0, self.chunks[frame].start) if frame else range(0)
        frame_role: Role = "style" if any(self.marks["style"][k] for k in framed) else "view"
        for chunk in self.chunks[:frame]:
            chunk.role = frame_role
        for k in framed:
            self.role[k] = frame_role
        reading = _Reading()
        for c in range(frame, len(self.chunks)):
            chunk = self.chunks[c]
            opener = "start" if c == frame else chunk.opener
            follows_verb = reading.after_verb
            reading.after_verb = opener == "verb" and chunk.head is None
            if opener == "verb":
                reading.in_subject_phrase = False
                self._read_verb(chunk, reading.previous)
                if chunk.head is not None:
                    reading.previous = chunk
                continue
            before = reading.previous.role if reading.previous is not None else None
            if chunk.head is None:
                # a link word with nothing after it: "with a hat *on*", "arms *up*"
                chunk.role = "pose" if opener == "prep" and before == "part" else before or "subject"
                continue
            if opener in ("prep", "with"):
                reading.in_subject_phrase = False
            chunk.role = self._role_of(chunk, opener, before, reading, follows_verb)
            if chunk.role == "subject":
                self.subject_chunks.append(c)
            for k in range(chunk.start, chunk.end):
                self.role[k] = chunk.role
            reading.previous = chunk
        self._mark_backdrop_idiom()

    def _role_of(
        self, chunk: Chunk, opener: str, before: Role | None, reading: _Reading, follows_verb: bool
    ) -> Role:
        """The role of a chunk with content that no verb opens."""
        head = chunk.head
        assert head is not None
        starts_subject = opener in ("start", "aux") or (
            opener in ("conj", "of") and reading.in_subject_phrase
        )
        if not self.subject_chunks and starts_subject:
            backdrop = self.stems[head] in BACKDROP_WORDS
            return "scene" if backdrop or self._only_weather_or_light(chunk) else "subject"
        if opener == "of" and follows_verb:
            # "made of lego": what the verb before it names, like a verb's object
            verb = self.chunks[self.chunk_of[chunk.start] - 1]
            owner_is_scene = self.role[verb.end - 1] == "scene"
            return "scene" if owner_is_scene or self._is_place(head) else "part"
        if opener in ("of", "rel"):
            return before or "scene"
        if opener in ("conj", "aux"):
            if self.stems[head] in BACKDROP_WORDS:  # "shells, pebbles, dark background"
                return "scene"
            joined = before == "subject" and (reading.in_subject_phrase or opener == "aux")
            return "subject" if joined else before or "scene"
        if opener == "with":
            return self._with_role(chunk, "scene" if follows_verb else before)
        return self._prep_role(chunk, before)  # a place preposition

    def _read_verb(self, chunk: Chunk, previous: Chunk | None) -> None:
        """Roles of a verb and what it acts on: the subject's pose and what it holds, wears or
        rides ("holding *a flower*"), unless the verb is another thing's ("with a plane
        *flying* overhead", "and a man *is fishing*") or acts on a place ("climbing a hill")."""
        before = previous.role if previous is not None else None
        owner_is_scene = before == "scene" and previous is not None and (
            previous.opener in ("with", "conj")
        )
        verb_role: Role = "scene" if owner_is_scene else "pose"
        # "made of", "covered in" describe the noun just before them: the subject or what it
        # wears ("a plant made of paper"), or a place ("a porch covered in snow"); after a
        # comma, the subject again ("a lighthouse, made of lego")
        after_comma = chunk.start > 0 and self.words[chunk.start - 1] == ","
        described: Role = "scene" if before == "scene" and not after_comma else "part"
        for k in range(chunk.start, chunk.end):
            if verb_role == "pose" and self.words[k] in _WEARING:
                self.role[k] = "part"
            elif verb_role == "pose" and self.words[k] in _DESCRIBING:
                self.role[k] = described
            else:
                self.role[k] = verb_role
        if chunk.head is None:
            return
        chunk.role = "scene" if owner_is_scene or self._is_place(chunk.head) else "part"
        object_start = next(k for k in range(chunk.start, chunk.end) if not self.verb[k])
        for k in range(object_start, chunk.end):
            self.role[k] = chunk.role

    def _is_place(self, i: int | None) -> bool:
        if i is None:
            return False
        return self.marks["setting"][i] or self.stems[i] in BACKDROP_WORDS

    def _only_weather_or_light(self, chunk: Chunk) -> bool:
        return all(self.marks["weather"][k] or self.marks["light"][k] for k in chunk.content)

    @property
    def landscape(self) -> bool:
        """Whether the main subject is itself a place ("a calm sea", "a street with cars")."""
        head = self.chunks[self.subject_chunks[0]].head if self.subject_chunks else None
        return self._is_place(head) and not self.is_("building", head)

    def _with_role(self, chunk: Chunk, before: Role | None) -> Role:
        """"with ..." is attached to the subject when it follows the subject or what it wears
        or holds ("a woman with glasses"), or when it is worn or a part of a body wherever it
        stands; otherwise it is another thing in the scene ("on a table with a laptop")."""
        head = chunk.head
        if self._is_place(head) or self.is_("weather", head) or self.is_("light", head):
            return "scene"
        if self.is_("body_part", head) or self.is_("wearable", head):
            return "part"
        if before == "part" or (before == "subject" and not self.landscape):
            return "part"
        if before == "subject" and self.is_("inside_outline", head):
            return "part"  # "a barn with a red roof"
        return "scene"

    def _prep_role(self, chunk: Chunk, before: Role | None) -> Role:
        """A place phrase says where the subject is (scene), unless it says where a part is
        ("with a ribbon *in her hair*"), is worn ("a man *in a blue suit*"), or is the direction
        the subject faces ("looking *at the camera*")."""
        head = chunk.head
        if self.is_("direction", head):
            return "pose"
        # "with a surfboard on *the* roof": a part of the subject, named as one already known
        known = self.words[chunk.content[0] - 1] in _DEFINITE if chunk.content[0] else False
        on_itself = (
            self.is_("body_part", head)
            or (self.is_("inside_outline", head) and known)
            or self.words[head or 0] in _ON_ITSELF
        )
        if before == "part" and on_itself:
            return "part"
        if before == "subject" and self.is_("body_part", head):
            return "pose"  # "standing on one leg", "sleeping on its back"
        worn = self.is_("wearable", head) or self.is_("colour", head)  # "a bride in white"
        if before in ("subject", "part") and self.words[chunk.start] == "in" and worn:
            return "part"
        return "scene"

    def _mark_backdrop_idiom(self) -> None:
        # "with mountains in the background", "with a lake and a boat in the background":
        # what is in the background is scene, back to the "with" it hangs on
        for c, chunk in enumerate(self.chunks):
            idiom = [w for w in self.words[chunk.start : chunk.end] if w != "the"]
            if idiom not in (["in", "background"], ["in", "distance"]):
                continue
            for earlier in reversed(self.chunks[:c]):
                if earlier.role in ("style", "view") or self._belongs_to_a_body(earlier):
                    break
                earlier.role = "scene"
                for k in range(earlier.start, earlier.end):
                    self.role[k] = "scene"
                if earlier.opener != "conj":
                    break
        self.subject_chunks = [c for c in self.subject_chunks if self.chunks[c].role == "subject"]

    def _belongs_to_a_body(self, chunk: Chunk) -> bool:
        """A part of the subject whatever follows: worn, a part of its body or of itself."""
        head = chunk.head
        return chunk.role == "part" and head is not None and any(
            self.marks[name][head] for name in ("wearable", "body_part", "inside_outline")
        )

    def _mark_words(self) -> None:
        """What a word names overrides its chunk's role: the medium, the framing, the light, the
        weather and directions are not where they stand."""
        for i in range(len(self.words)):
            if not self.is_content(i) or self.role[i] in ("style", "view"):
                continue
            if self.names_the_medium(i):
                self.role[i] = "style"
            elif self.marks["view"][i]:
                self.role[i] = "view"
            elif self.marks["light"][i]:
                self.role[i] = "light"
            elif self.marks["weather"][i] and not self._heads_the_subject(i):
                self.role[i] = "weather"
            elif self.marks["direction"][i] and self.role[i] in ("scene", "part"):
                self.role[i] = "pose"

    def made_of(self, i: int) -> bool:
        """Whether word ``i`` is in what a describing participle names, the stuff a thing is
        made of or covered with ("made of *wool*", "covered in *gold*")."""
        start = self.chunks[self.chunk_of[i]].start
        return start > 0 and self.words[start - 1] in _DESCRIBING

    def _heads_the_subject(self, i: int) -> bool:
        return self.role[i] == "subject" and self.chunks[self.chunk_of[i]].head == i

    def names_the_medium(self, i: int) -> bool:
        """Whether style word ``i`` names how the whole picture is made, not a thing in it.

        "a *cartoon* dog", "in the style of *van gogh*", ", *digital art*" name the medium;
        "a *painting* on the wall", "a book -> a *painting*" are things.
        """
        if not self.marks["style"][i] or stem(self.words[i]) != self.words[i]:
            return False  # "paintings" are things
        chunk = self.chunks[self.chunk_of[i]]
        if i != chunk.head:
            # a style word before a noun: "a *cartoon* dog", "*watercolor* flowers"; but the
            # place behind the subject is a thing of this world ("a *graffiti* wall")
            return chunk.role not in ("scene", "part")
        words = set(self.stems[chunk.start : chunk.end])
        if _STYLE_WORDS & words:
            return True  # "in a low poly style"
        c = self.chunk_of[i]
        previous = self.chunks[c - 1] if c > 0 else None
        if previous is not None and previous.head is not None:
            if self.stems[previous.head] in _STYLE_WORDS and chunk.opener == "of":
                return True  # "in the style of van gogh"
        # a trailing tag (", digital art", "in watercolor", "... macro photography"), not a
        # thing the subject is in front of or next to ("next to a painting")
        links = [k for k in range(chunk.start, chunk.content[0]) if self._link(k)]
        single = len(links) == 1 and self.words[links[0]] in {",", "in", "as", "by"}
        ends_a_place_phrase = (
            chunk.opener == "prep" and chunk.end == len(self.words) and i > chunk.content[0]
        )
        return single or ends_a_place_phrase

    # -- the subject ---------------------------------------------------------------------------

    @property
    def subject_heads(self) -> set[str]:
        """The stems of the main subject's nouns (several when it is a group)."""
        return {
            self.stems[head]
            for c in self.subject_chunks
            if (head := self.chunks[c].head) is not None
            and self.role[head] == "subject"
            and self.chunks[c].opener != "aux"  # "the taj mahal *is a building*": the same thing
        }

    @property
    def subject_text(self) -> str:
        """The main subject's noun phrase as written ("a black cat", "a cup and a saucer")."""
        if not self.subject_chunks:
            return ""
        first = self.chunks[self.subject_chunks[0]]
        last = first
        for c in self.subject_chunks[1:]:
            chunk = self.chunks[c]
            joined = chunk.opener in ("conj", "of") and c == self.chunk_of[last.end - 1] + 1
            if not joined or self.role[chunk.head or chunk.start] in ("style", "view"):
                break  # "a castle, fantasy art": the tag is no part of the subject
            last = chunk
        words = [w for w in self.words[first.start : last.end] if w not in _AUXILIARIES]
        while words and (words[0] in _CONJUNCTIONS or words[0] == "of"):
            words = words[1:]
        return " ".join(words).replace(" ,", ",")
