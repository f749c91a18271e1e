"""Planning a batch run: what to edit, and where each result goes, decided before any model loads.

:func:`plan_folder` edits every image of a folder with one pair of descriptions;
:func:`plan_manifest` reads the edits from a CSV or JSONL manifest, row by row (bad rows are
reported by line, not run). Both give a :class:`BatchPlan` that :func:`~regionedit.batch.run_batch`
runs.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Union

from pydantic import BaseModel, Field, ValidationError, field_validator

from ..errors import ImageInputError, ManifestError, OutputError, option
from ..types import EditSettings, output_paths, settings_problem
from .pipeline import DEFAULT_BATCH_SIZE, BatchItem, BatchPolicy

__all__ = [
    "BatchOptions",
    "PlannedItem",
    "RejectedRow",
    "BatchPlan",
    "plan_folder",
    "plan_manifest",
    "sheet_path",
]

log = logging.getLogger("regionedit")

ImageFormat = Literal["png", "jpg", "webp"]

_IMAGE_SUFFIXES_KEPT = {".png", ".jpg", ".jpeg", ".webp"}
#: manifest columns besides the edit settings' names
_OTHER_COLUMNS = {"image", "output", "guidance"}
#: edit settings a manifest row may not set: the run's unidentified policy holds for all rows
_RUN_ONLY_SETTINGS = {"on_unidentified"}


class BatchOptions(BaseModel):
    """How a batch run writes its results, and the settings every item starts from."""

    out_dir: Path
    image_format: ImageFormat = "png"
    #: output file name without suffix; ``{stem}`` is the input's, ``{index}`` the item number
    name: str = "{stem}.edited"
    save_mask: bool = False
    dry_run: bool = False
    on_unidentified: BatchPolicy = "error"
    llm_concurrency: int = Field(8, ge=1)
    #: images per model call; part of the resume key, since more than one can change pixels by
    #: float rounding
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    #: write ``regionedit.score`` figures (and CLIP scores when ``clip_model`` is set) into
    #: each sidecar
    score: bool = False
    clip_model: Optional[str] = None
    #: edit settings for every item; a manifest row's own values win
    edit: dict[str, Any] = Field(default_factory=dict)

    @field_validator("edit")
    @classmethod
    def _valid_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        # checked here, so that a bad setting stops the run before any image is read
        try:
            EditSettings.model_validate({"source": "-", "target": "-", **value})
        except ValidationError as exc:
            raise ValueError(settings_problem(exc)) from None
        return value

    @field_validator("name")
    @classmethod
    def _file_name_pattern(cls, value: str) -> str:
        try:
            example = value.format(stem="photo", index=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"the name pattern {value!r} is not usable ({exc!r}); the fields are {{stem}} "
                "and {index}, e.g. '{stem}.edited'"
            ) from None
        if not example.strip(". ") or "/" in example or "\\" in example:
            raise ValueError(f"the name pattern {value!r} must give a file name, not a path")
        return value

    def output_for(self, relative_input: Path, index: int, explicit: Optional[str]) -> Path:
        """The edited image's path for the input at ``relative_input`` (relative to the input
        folder or the manifest): the same sub-folders under ``out_dir``, named by ``name``."""
        if explicit:
            path = Path(explicit)
            if path.suffix.lower() not in _IMAGE_SUFFIXES_KEPT:
                path = path.with_name(f"{path.name}.{self.image_format}")
            return self.out_dir / path
        name = self.name.format(stem=relative_input.stem, index=index)
        return self.out_dir / relative_input.parent / f"{name}.{self.image_format}"


class PlannedItem(BaseModel):
    """One item of a plan: the edit, how the user named its input, and its output path."""

    item: BatchItem
    label: str = Field(description="the input path relative to the input folder or manifest")
    output: Path
    line: Optional[int] = Field(None, description="manifest line")


class RejectedRow(BaseModel):
    """A manifest row that cannot be run, and why."""

    label: str
    line: int
    error: str


class BatchPlan(BaseModel):
    """Everything a run will do, decided before any model loads."""

    items: list[PlannedItem] = Field(default_factory=list)
    rejected: list[RejectedRow] = Field(default_factory=list)
    #: files in the input folder that are not images (or are links leading out of it)
    ignored_files: int = 0


def plan_folder(
    folder: str | os.PathLike[str],
    source: str,
    target: str,
    options: BatchOptions,
    *,
    recursive: bool = False,
) -> BatchPlan:
    """Every image in ``folder`` (and its sub-folders with ``recursive``), each edited from
    ``source`` to ``target``.

    Files Pillow does not know as images are counted in ``ignored_files`` and left alone, as are
    symbolic links that lead out of the folder; linked sub-folders are not entered. The output
    folder may lie inside the input folder (it is not scanned) but may not be the input folder.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise ImageInputError(f"{folder} is not a folder. Give the folder holding the images.")
    out_dir = options.out_dir.resolve()
    if out_dir == root:
        raise OutputError(
            f"The output folder {options.out_dir} is the input folder: choose another -o folder, "
            "so results never mix with (or overwrite) the inputs."
        )
    suffixes = _readable_image_suffixes()
    plan = BatchPlan()
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow linked folders
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() != out_dir)
        for name in sorted(filenames):
            path = here / name
            if (
                path.suffix.lower() not in suffixes
                or not _is_within(path.resolve(), root)
                or not path.is_file()
            ):
                log.debug("ignoring %s: not an image file inside %s", path, root)
                plan.ignored_files += 1
                continue
            relative = path.relative_to(root)
            item = BatchItem(
                image=path, settings=EditSettings(source=source, target=target, **options.edit)
            )
            output = options.output_for(relative, len(plan.items) + 1, None)
            plan.items.append(PlannedItem(item=item, label=relative.as_posix(), output=output))
        if not recursive:
            break
    return _resolve_output_clashes(plan)


def plan_manifest(
    manifest: str | os.PathLike[str], options: BatchOptions, *, strict: bool = False
) -> BatchPlan:
    """The edits listed in a CSV or JSONL manifest, validated row by row.

    Rows that cannot run (a bad value, an image missing or outside the manifest's folder, an
    ``output`` outside the output folder) go to ``plan.rejected`` with their line numbers;
    with ``strict`` any such row raises :class:`~regionedit.errors.ManifestError` instead.
    Unknown columns and unreadable manifests always raise it.
    """
    manifest = Path(manifest)
    base = manifest.parent.resolve()
    plan = BatchPlan()
    for line, row in _manifest_rows(manifest):
        label = str(row.get("image", "")) if isinstance(row, dict) else ""
        try:
            if isinstance(row, str):
                raise ValueError(row)
            item = BatchItem.from_row(row, options.edit)
            image = _inside_manifest_folder(base, item.image)
            if item.output is not None:
                _check_output_name(item.output)
        except (ValidationError, ValueError) as exc:
            plan.rejected.append(RejectedRow(label=label, line=line, error=_row_problem(exc)))
            continue
        relative = image.relative_to(base)
        output = options.output_for(relative, len(plan.items) + 1, item.output)
        plan.items.append(
            PlannedItem(
                item=item.model_copy(update={"image": image}),
                label=relative.as_posix(),
                output=output,
                line=line,
            )
        )
    if strict and plan.rejected:
        rows = "; ".join(f"line {r.line}: {r.error}" for r in plan.rejected)
        strict_option = option("strict=True", "--strict")
        raise ManifestError(
            f"{manifest} has {len(plan.rejected)} row(s) that cannot run ({rows}); nothing was "
            f"done. Fix these rows, or run without {strict_option} to edit the valid rows only."
        )
    return _resolve_output_clashes(plan)


def _manifest_columns() -> set[str]:
    return (set(EditSettings.model_fields) - _RUN_ONLY_SETTINGS) | _OTHER_COLUMNS


def _manifest_rows(manifest: Path) -> Iterator[tuple[int, Union[dict[str, Any], str]]]:
    """(line number, row) for each row; a row that is not even a record is a problem string."""
    suffix = manifest.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ManifestError(
            f"Cannot tell the format of the manifest {manifest}: name it .csv (with a header "
            "row) or .jsonl (one JSON object per line)."
        )
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            if suffix == ".csv":
                yield from _csv_rows(manifest, f)
            else:
                yield from _jsonl_rows(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"Cannot read the manifest {manifest}: {exc}. Check the path, and save it as UTF-8."
        ) from None


def _csv_rows(manifest: Path, f: Any) -> Iterator[tuple[int, Union[dict[str, Any], str]]]:
    reader = csv.DictReader(f)
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = sorted(set(header) - _manifest_columns())
    missing = [name for name in ("image", "source", "target") if name not in header]
    if unknown or missing:
        raise ManifestError(
            f"The manifest {manifest} header "
            + (f"has unknown column(s) {', '.join(unknown)}" if unknown else "")
            + ("; " if unknown and missing else "")
            + (f"lacks the column(s) {', '.join(missing)}" if missing else "")
            + f". The columns are: {', '.join(sorted(_manifest_columns()))}."
        )
    reader.fieldnames = header
    for row in reader:
        if None in row:  # DictReader puts surplus cells under the key None
            yield reader.line_num, f"{len(row[None])} more value(s) than the header has columns"
            continue
        # An empty cell means "not set here": the run's value applies.
        yield reader.line_num, {k: v for k, v in row.items() if v is not None and v.strip()}


def _jsonl_rows(f: Any) -> Iterator[tuple[int, Union[dict[str, Any], str]]]:
    for line, text in enumerate(f, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if isinstance(value, dict):
            yield line, {k: v for k, v in value.items() if v is not None}
        else:
            yield line, f"expected a JSON object, got {type(value).__name__}"


def _row_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        spell = lambda name, value: f"{name} {value}"  # noqa: E731
        return settings_problem(exc, spell).removeprefix("Bad edit setting: ").rstrip(".")
    return str(exc)


def _inside_manifest_folder(base: Path, image: Path) -> Path:
    """``base / image`` tidied (``a/../b`` -> ``b``); ValueError when it, or the file a link
    there leads to, is outside ``base``, or when it is not a file."""
    path = base / os.path.normpath(image)
    if image.is_absolute() or not _is_within(path.resolve(), base):
        raise ValueError(
            f"image: {image} is outside the manifest's folder {base}; image paths are relative "
            "to the manifest and stay inside its folder (move the image or the manifest)"
        )
    if not path.is_file():
        raise ValueError(f"image: {image} not found next to the manifest ({path})")
    return path


def _check_output_name(output: str) -> None:
    path = Path(output)
    if path.is_absolute() or ".." in path.parts or not path.name.strip(". "):
        raise ValueError(f"output: {output!r} must be a file path inside the output folder")


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _readable_image_suffixes() -> frozenset[str]:
    """File suffixes of every format Pillow can open."""
    from PIL import Image

    return frozenset(
        suffix for suffix, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
    )


def _files_written_for(output: Path) -> list[Path]:
    """Every file an item with this output may write: what ``EditResult.save`` writes with up
    to 64 candidates (the most ``candidates`` allows), and the contact sheet."""
    return [*output_paths(output, candidates=64).values(), sheet_path(output)]


def sheet_path(output: Path) -> Path:
    """Where the contact sheet of an item with several candidates goes."""
    return output.with_name(f"{output.stem}.sheet.png")


def _resolve_output_clashes(plan: BatchPlan) -> BatchPlan:
    """Give the 2nd, 3rd... item writing to the same path a ``.2``, ``.3``... suffix, and
    refuse any output path that is one of the inputs."""
    inputs = {planned.item.image.resolve() for planned in plan.items}
    seen: dict[str, int] = {}
    for planned in plan.items:
        key = str(planned.output).casefold()  # case-insensitive file systems clash too
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            output = planned.output
            planned.output = output.with_name(f"{output.stem}.{seen[key]}{output.suffix}")
        if any(path.resolve() in inputs for path in _files_written_for(planned.output)):
            raise OutputError(
                f"The output {planned.output} would overwrite an input image: choose another "
                "output folder (-o) or name pattern (--name)."
            )
    return plan
