"""Versioned LLM prompts, kept as Markdown files under the repository's ``prompts/`` folder.

A prompt file starts with a front matter block (``name`` and ``version``), then a ``## system``
line and a ``## user`` line that split it into the system message and the user message template.
HTML comments (``<!-- ... -->``) are notes for maintainers and are never sent.

The wheel ships the folder as ``regionedit/prompts/`` inside the package (pyproject
``force-include``); a source checkout reads ``<repo>/prompts/``. The package folder has no
``__init__.py``, so ``import regionedit.prompts`` still finds this module.
"""

from __future__ import annotations

import re
import string
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["Prompt", "load_prompt"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SECTION = re.compile(r"^## (system|user)[ \t]*$", re.MULTILINE)
_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)


class Prompt(BaseModel):
    """One versioned prompt: a system message and a user message template."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    system: str
    #: ``string.Template`` text: ``$placeholder`` is filled by :meth:`render_user`
    user: str

    @property
    def id(self) -> str:
        """``<name>-v<version>``, recorded with every answer the prompt produced."""
        return f"{self.name}-v{self.version}"

    def render_user(self, **values: str) -> str:
        """The user message with every ``$placeholder`` replaced; KeyError if one is missing."""
        return string.Template(self.user).substitute(values)


def _candidate_paths(name: str) -> list[Path]:
    filename = f"{name}.md"
    installed = Path(str(resources.files("regionedit"))) / "prompts" / filename
    checkout = Path(__file__).resolve().parents[2] / "prompts" / filename
    return [installed, checkout]


def _parse(name: str, text: str, origin: Path) -> Prompt:
    front = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    if front is None:
        raise ValueError(f"{origin}: a prompt file must start with a '---' front matter block")
    meta: dict[str, str] = {}
    for line in front.group(1).splitlines():
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip()
    body = _COMMENT.sub("", text[front.end() :])
    parts = _SECTION.split(body)
    # split() gives [preamble, "system", text, "user", text]
    if len(parts) != 5 or set(parts[1::2]) != {"system", "user"}:
        raise ValueError(f"{origin}: expected exactly one '## system' and one '## user' line")
    sections = {parts[1]: parts[2], parts[3]: parts[4]}
    return Prompt(
        name=meta.get("name", name),
        version=int(meta["version"]),
        system=sections["system"].strip(),
        user=sections["user"].strip(),
    )


@cache
def load_prompt(name: str) -> Prompt:
    """Load the prompt ``name`` (e.g. ``"classify_region"``), from the install or the checkout.

    Raises ValueError for a malformed name or file and FileNotFoundError when no copy exists
    (a broken install: reinstall regionedit).
    """
    if not _NAME.match(name):
        raise ValueError(f"invalid prompt name {name!r}: use lowercase letters, digits, '_' or '-'")
    candidates = _candidate_paths(name)
    for path in candidates:
        if path.is_file():
            # read_text translates \r\n, so a Windows checkout parses the same
            return _parse(name, path.read_text(encoding="utf-8"), path)
    searched = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"prompt {name!r} not found (looked in {searched}); reinstall regionedit, "
        "or run from a checkout that has the prompts/ folder"
    )
