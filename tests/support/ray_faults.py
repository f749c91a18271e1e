"""An :class:`~regionedit.editor.Editor` whose process dies on chosen inputs, for the Ray tests.

Ray workers build it from a ``functools.partial`` (see ``run_batch_on_ray(make_editor=...)``),
so this module must be importable there: the Ray tests put ``tests/`` on the workers'
``PYTHONPATH``. The process exits with ``os._exit``, as a crash or the kernel's OOM killer ends
it: no exception, no cleanup, no reply to Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from regionedit import Editor


class EditorThatDies(Editor):
    """Kills its own process when it loads an input named in ``dies_once`` (the first time, as
    recorded by a file in ``marks``) or in ``dies_always`` (every time). Each death appends a
    line to ``marks/<name>.deaths``."""

    def __init__(
        self,
        *,
        marks: str,
        dies_once: tuple[str, ...] = (),
        dies_always: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.marks = Path(marks)
        self.dies_once = dies_once
        self.dies_always = dies_always

    def load(self, image: Any) -> Any:
        name = Path(image).name if isinstance(image, (str, os.PathLike)) else None
        deaths = self.marks / f"{name}.deaths"
        if name in self.dies_always or (name in self.dies_once and not deaths.exists()):
            with open(deaths, "a") as f:
                f.write(f"{os.getpid()}\n")
            os._exit(1)
        return super().load(image)


def deaths(marks: Path, name: str) -> int:
    """How many times a worker died on the input ``name``."""
    path = marks / f"{name}.deaths"
    return len(path.read_text().splitlines()) if path.exists() else 0
