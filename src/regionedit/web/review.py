"""A batch output folder as the review page sees it: its items, their files, picks and re-runs.

Everything comes from the folder: ``run.jsonl`` (the latest line of each input wins, so a re-run
with other settings replaces what the page shows) and each item's sidecar. Files are served only
when they resolve to a path inside the folder; an item's original, which lives outside it, is
served only as a preview re-encoded from a file whose content hash is the one the run recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..batch import RUN_LOG, BatchItem, BatchOptions, PlannedItem, RunJournal, edit_many
from ..batch.run import write_item
from ..errors import ImageInputError, OutputError, SettingsError
from ..types import Region
from .picks import pick_candidate

if TYPE_CHECKING:  # pragma: no cover
    from ..editor import Editor
    from .jobs import Progress

__all__ = ["BatchFolder", "ReviewItem", "STATUSES", "NotFound"]

log = logging.getLogger("regionedit")

#: what the review page calls an item: edited, decided only (a dry run), failed, or waiting for
#: the user to say which region changes
STATUSES = ("done", "decided", "failed", "unidentified")


class NotFound(LookupError):
    """No such item or file in the folder (the API answers 404)."""


@dataclass
class ReviewItem:
    """One input of the batch: its latest ``run.jsonl`` line and what followed it."""

    key: str
    entry: dict[str, Any]
    status: str
    #: the pick recorded after the latest line (a re-run of the item clears it)
    pick: Optional[dict[str, Any]] = None

    @property
    def outputs(self) -> dict[str, str]:
        return self.entry.get("outputs") or {}


def item_key(entry: dict[str, Any]) -> str:
    """An item's id in URLs: the same for every line about the same input (and manifest row)."""
    name = f"{entry.get('input', '')}\0{entry.get('line')}"
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def status_of(entry: dict[str, Any]) -> str:
    if entry.get("status") == "skipped" or entry.get("error_type") == "UnidentifiedRegionError":
        return "unidentified"
    if entry.get("status") == "failed":
        return "failed"
    return "done" if "image" in (entry.get("outputs") or {}) else "decided"


class BatchFolder:
    """Reads (and, for picks and re-runs, writes) one batch output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir.resolve()
        self.log_path = self.out_dir / RUN_LOG
        self._cache: tuple[Optional[tuple[int, int]], list[ReviewItem]] = (None, [])
        self._lock = threading.Lock()
        # a pick and a re-run's writing never overlap: each reads what the other writes
        self._writing = threading.Lock()

    # -- reading -----------------------------------------------------------------------------

    def items(self) -> list[ReviewItem]:
        """Every item, in the order the run first listed them; parsed again only when
        ``run.jsonl`` has changed."""
        try:
            stat = self.log_path.stat()
        except FileNotFoundError:
            return []
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._cache[0] != version:
                self._cache = (version, self._parse())
            return self._cache[1]

    def _parse(self) -> list[ReviewItem]:
        items: dict[str, ReviewItem] = {}
        by_resume_key: dict[tuple[str, str], str] = {}
        for entry in self._lines():
            kind = entry.get("type")
            if kind == "item":
                key = item_key(entry)
                # a key already there keeps its place: the order the run first listed inputs in
                items[key] = ReviewItem(key=key, entry=entry, status=status_of(entry))
                if "settings_sha256" in entry:
                    by_resume_key[(entry["input_sha256"], entry["settings_sha256"])] = key
            elif kind == "pick":
                key = by_resume_key.get((entry.get("input_sha256"), entry.get("settings_sha256")))
                if key is not None:
                    items[key].pick = entry
        return list(items.values())

    def _lines(self) -> Iterator[dict[str, Any]]:
        """The journal's lines. Read here without RunJournal, which repairs a torn last line:
        a page must never truncate the file a running batch is appending to."""
        data = self.log_path.read_bytes()
        for number, text in enumerate(data.split(b"\n")[:-1], start=1):  # the tail is partial
            try:
                entry = json.loads(text)
            except ValueError:
                log.warning("%s line %d is not JSON; ignoring it", self.log_path, number)
                continue
            if isinstance(entry, dict):
                yield entry

    def page(self, status: Optional[str], offset: int, limit: int) -> dict[str, Any]:
        """One page of items (described in full), with the count of each status."""
        every = self.items()
        counts = {name: 0 for name in (*STATUSES, "picked")}
        for item in every:
            counts[item.status] += 1
            counts["picked"] += item.pick is not None
        if status == "picked":
            chosen = [item for item in every if item.pick is not None]
        elif status:
            chosen = [item for item in every if item.status == status]
        else:
            chosen = every
        return {
            "total": len(chosen),
            "offset": offset,
            "limit": limit,
            "counts": {"all": len(every), **counts},
            "items": [self.describe(item) for item in chosen[offset : offset + limit]],
        }

    def item(self, key: str) -> ReviewItem:
        for item in self.items():
            if item.key == key:
                return item
        raise NotFound(f"No item {key} in {self.out_dir.name}/{RUN_LOG}.")

    def describe(self, item: ReviewItem) -> dict[str, Any]:
        """An item as the API shows it: its state, its files' URLs and the seed of each
        candidate, in the order the files now hold them."""
        entry = item.entry
        sidecar = self._sidecar(item) or {}
        seeds = sidecar.get("candidate_seeds") or entry.get("seeds") or []
        base = f"/api/items/{item.key}"
        files = []
        for position, seed in enumerate(seeds):
            kind = "image" if position == 0 else f"candidate{position}"
            version = self._version(item, kind)
            if version is not None:
                files.append({
                    "position": position, "seed": seed, "kind": kind,
                    "thumb": f"{base}/images/{kind}?size=thumb&v={version}",
                    "view": f"{base}/images/{kind}?size=view&v={version}",
                    "file": f"{base}/files/{kind}?v={version}",
                })
        mask_version = self._version(item, "mask")
        can_show_original = bool(entry.get("input_sha256")) and (
            self._original_path(item, sidecar) is not None
        )
        return {
            "key": item.key,
            "input": entry.get("input"),
            "line": entry.get("line"),
            "status": item.status,
            "region": entry.get("region"),
            "decided_by": entry.get("decided_by"),
            "reason": entry.get("reason"),
            "stage": entry.get("stage"),
            "error_type": entry.get("error_type"),
            "error": entry.get("error"),
            "source": (entry.get("settings") or sidecar.get("settings") or {}).get("source"),
            "target": (entry.get("settings") or sidecar.get("settings") or {}).get("target"),
            "candidates": files,
            "mask": None if mask_version is None else {
                "thumb": f"{base}/images/mask?size=thumb&v={mask_version}",
                "view": f"{base}/images/mask?size=view&v={mask_version}",
            },
            "original": None if not can_show_original else {
                "thumb": f"{base}/images/original?size=thumb",
                "view": f"{base}/images/original?size=view",
            },
            "sidecar": f"{base}/files/sidecar" if "sidecar" in item.outputs else None,
            "pick": sidecar.get("pick") if item.pick is not None else None,
            "rerun": entry.get("rerun"),
            "can_rerun": self._request(item, sidecar) is not None,
        }

    # -- files -------------------------------------------------------------------------------

    def output_file(self, item: ReviewItem, kind: str) -> Path:
        """The item's output file of this kind (``image``, ``mask``, ``candidate1``,
        ``sidecar``, ``sheet``...), refused unless it lies inside the folder."""
        relative = item.outputs.get(kind)
        if not isinstance(relative, str):
            raise NotFound(f"Item {item.key} has no {kind} file.")
        return self.inside(relative)

    def inside(self, relative: str) -> Path:
        """``relative`` under the folder, resolved (links followed); NotFound when it leads out
        of the folder or is not a file."""
        path = (self.out_dir / relative).resolve()
        if self.out_dir not in path.parents or not path.is_file():
            raise NotFound(f"{relative} is not a file inside {self.out_dir.name}.")
        return path

    def original(self, item: ReviewItem) -> tuple[Path, str]:
        """The item's input file and the content hash the run recorded for it (the caller
        serves only a preview of it, and only when the hashes match)."""
        path = self._original_path(item, self._sidecar(item) or {})
        expected = item.entry.get("input_sha256")
        if path is None or not expected:
            raise NotFound(f"The run did not record the original of item {item.key}.")
        return path, expected

    @staticmethod
    def _original_path(item: ReviewItem, sidecar: dict[str, Any]) -> Optional[Path]:
        recorded = item.entry.get("image") or (sidecar.get("input") or {}).get("path")
        return Path(recorded) if isinstance(recorded, str) and recorded else None

    def _version(self, item: ReviewItem, kind: str) -> Optional[int]:
        """A number that changes when the file changes (for URLs a browser may cache), or None
        when the item has no such file."""
        try:
            return self.output_file(item, kind).stat().st_mtime_ns
        except (NotFound, OSError):
            return None

    def _sidecar(self, item: ReviewItem) -> Optional[dict[str, Any]]:
        try:
            record = json.loads(self.output_file(item, "sidecar").read_text(encoding="utf-8"))
        except (NotFound, OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    # -- changing the folder -----------------------------------------------------------------

    def pick(self, item: ReviewItem, position: int) -> dict[str, Any]:
        """Make candidate ``position`` the item's output, and record the pick in the sidecar and
        in ``run.jsonl``."""
        if item.status != "done":
            raise SettingsError(f"Item {item.entry.get('input')} has no candidates to pick from.")
        kind = f"candidate{position}"
        if kind not in item.outputs:
            count = sum(1 for name in item.outputs if name.startswith("candidate"))
            raise SettingsError(
                f"candidate must be from 1 to {count} (0 is the current output), not {position}."
            )
        entry = item.entry
        with self._writing:
            record = pick_candidate(
                self.output_file(item, "image"), self.output_file(item, kind),
                self.output_file(item, "sidecar"), position,
            )
            RunJournal(self.log_path).append({
                "type": "pick",
                "input": entry.get("input"),
                "line": entry.get("line"),
                "input_sha256": entry.get("input_sha256"),
                "settings_sha256": entry.get("settings_sha256"),
                **record["pick"],
            })
        return self.describe(self.item(item.key))

    def _request(
        self, item: ReviewItem, sidecar: dict[str, Any]
    ) -> Optional[tuple[Path, dict[str, Any], str]]:
        """(input file, edit settings, output path) to redo the item: from its line, or from
        its sidecar for lines written before lines recorded them."""
        entry = item.entry
        image = self._original_path(item, sidecar)
        settings = entry.get("settings") or sidecar.get("settings")
        output = entry.get("output") or item.outputs.get("image")
        if image is None or not isinstance(settings, dict) or not isinstance(output, str):
            return None
        if not entry.get("input_sha256") or not entry.get("settings_sha256"):
            return None
        return image, settings, output

    def rerun(
        self,
        editor: "Editor",
        item: ReviewItem,
        *,
        seed: Optional[int],
        region: Optional[Region],
        progress: "Progress",
    ) -> dict[str, Any]:
        """Edit the item again with another seed (None: a new random one) and, optionally, a
        region chosen by the user; write it as the batch would, under the same resume key, so a
        rerun of the batch keeps it. Nothing is recorded when the edit fails."""
        request = self._request(item, self._sidecar(item) or {})
        if request is None:
            raise SettingsError(
                f"The run did not record enough to redo {item.entry.get('input')}: run the "
                "batch again instead."
            )
        image, asked, output = request
        target = (self.out_dir / output).resolve()  # a link leading out of the folder is refused
        if self.out_dir not in target.parents:
            raise NotFound(f"{output} is not inside {self.out_dir.name}.")
        update: dict[str, Any] = {"seed": seed}
        if region is not None:
            update["region"] = region
        settings = editor.settings(**{**asked, **update})
        entry = item.entry
        planned = PlannedItem(
            item=BatchItem(image=image, settings=settings), label=str(entry.get("input")),
            output=target, line=entry.get("line"),
        )
        line: dict[str, Any] = {
            "type": "item",
            "input": entry.get("input"),
            **({"line": entry["line"]} if entry.get("line") is not None else {}),
            "image": str(image),
            "output": output,
            "settings": settings.model_dump(mode="json"),
            # the batch's own key: a rerun of the batch finds this line, the files and the
            # sidecar's matching record, and keeps the result
            "input_sha256": entry["input_sha256"],
            "settings_sha256": entry["settings_sha256"],
            "rerun": {"seed": seed, "region": region, "at": _now()},
        }
        progress(0.1, "editing")
        (outcome,) = list(edit_many(editor, [planned.item]))
        if outcome.status != "ok":
            if outcome.error is not None:
                raise outcome.error
            raise ImageInputError(f"{entry.get('input')} was not edited ({outcome.status}).")
        progress(0.9, "saving")
        options = BatchOptions(out_dir=self.out_dir, save_mask=True)
        with self._writing:
            written = write_item(planned, line, outcome, options)
            if written.get("status") != "ok":
                raise OutputError(str(written.get("error")))
            RunJournal(self.log_path).append(written)
        return self.describe(self.item(item.key))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
