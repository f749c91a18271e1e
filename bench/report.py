"""The table printed at the end of a run, and the targets the figures are held to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Optional


@dataclass(frozen=True)
class Target:
    """A limit on one figure of the results; ``get`` returns the median (None: not measured)."""

    key: str
    figure: str
    limit: float
    #: "max": the figure must be at most ``limit``; "min": at least
    kind: Literal["max", "min"]
    get: Callable[[dict], Optional[float]]
    unit: str = ""

    def text(self) -> str:
        return f"{'<=' if self.kind == 'max' else '>='} {_number(self.limit)}{self.unit}"

    def evaluate(self, results: dict) -> dict[str, Any]:
        try:
            value = self.get(results)
        except (KeyError, TypeError):
            value = None
        met = None
        if value is not None:
            met = value <= self.limit if self.kind == "max" else value >= self.limit
        return {"key": self.key, "figure": self.figure, "target": self.text(), "measured": value,
                "met": met}


def _median(*path: str) -> Callable[[dict], Optional[float]]:
    def get(results: dict) -> Optional[float]:
        value: Any = results
        for key in path:
            value = value[key]
        return value["median"] if isinstance(value, dict) else value

    return get


def _large_edit_own_ms(results: dict) -> Optional[float]:
    large = results["memory"]["large_edit"]
    return large["own_ms"]["median"] if large["input"].endswith("(24 MP)") else None


TARGETS = (
    Target("overhead_ratio_512", "edit / bare pipeline, 512 px, without the segmentation model",
           1.10, "max", _median("overhead", "sizes", "512", "ratio_without_segmentation")),
    Target("overhead_ratio_512_with_segmentation", "edit / bare pipeline, 512 px, all included",
           1.10, "max", _median("overhead", "sizes", "512", "ratio")),
    Target("own_ms_512", "regionedit's own work per 512 px image", 50, "max",
           _median("overhead", "sizes", "512", "own_ms"), " ms"),
    Target("own_ms_24mp", "regionedit's own work per 24 MP image", 400, "max",
           _large_edit_own_ms, " ms"),
    Target("batch_vs_naive", "batch speed-up over a fresh Editor per image", 5, "min",
           _median("batch", "batch_speedup_vs_naive"), "x"),
    Target("llm_vs_sequential", "concurrent LLM classification over sequential requests", 8,
           "min", _median("llm", "speedup_vs_sequential_requests"), "x"),
    Target("import_s", "import regionedit (in-process)", 0.3, "max",
           _median("startup", "import_in_process_s"), " s"),
    Target("help_s", "regionedit --help (whole process)", 0.5, "max",
           _median("startup", "help_process_s"), " s"),
    Target("batch_rss_growth", "peak RSS of the long batch over the short one", 0.10, "max",
           _median("memory", "batch", "growth")),
)


def evaluate_targets(results: dict) -> list[dict[str, Any]]:
    return [target.evaluate(results) for target in TARGETS]


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def spread_text(value: Any, unit: str = "") -> str:
    """"median [min-max]unit" for a spread dict, the number for a plain value."""
    if isinstance(value, dict) and "median" in value:
        if value.get("n", 1) == 1:
            return f"{_number(value['median'])}{unit}"
        return (f"{_number(value['median'])} [{_number(value['min'])}-{_number(value['max'])}]"
                f"{unit}")
    if isinstance(value, (int, float)):
        return f"{_number(value)}{unit}"
    return str(value)


def _rows(results: dict) -> list[tuple[str, str, str]]:
    """(section, figure, measured) rows of the table, from whatever sections ran."""
    rows: list[tuple[str, str, str]] = []
    overhead = results.get("overhead")
    if overhead:
        for side, size in overhead["sizes"].items():
            where = f"overhead {side}px"
            rows += [
                (where, f"edit ms (gen {size['generation_size']}, {overhead['steps']} steps)",
                 spread_text(size["edit_ms"])),
                (where, "bare pipeline call ms", spread_text(size["bare_pipeline_ms"])),
                (where, "pipeline call inside the edit ms",
                 spread_text(size["pipeline_in_edit_ms"])),
                (where, "ratio edit / bare", spread_text(size["ratio"])),
                (where, "ratio without segmentation model",
                 spread_text(size["ratio_without_segmentation"])),
                (where, "ratio, bare call in place of the edit's (1 + own + seg / bare)",
                 spread_text(size.get("ratio_from_own_time", {}))),
                (where, "... without segmentation model (1 + own / bare)",
                 spread_text(size.get("ratio_from_own_time_without_segmentation", {}))),
                (where, "segmentation model ms", spread_text(size["segment_model_ms"])),
                (where, "regionedit own ms", spread_text(size["own_ms"])),
                (where, "own ms by stage", _stages(size["own_stage_ms"])),
            ]
    batch = results.get("batch")
    if batch:
        where = f"batch {batch['items']} images x{batch['rounds']}"
        for name in ("naive", "reused_editor", "batch"):
            mode = batch[name]
            if "pending" in mode:
                rows.append((where, f"{name} s", f"pending: {mode['pending']}"))
                continue
            rows += [
                (where, f"{name} s", spread_text(mode["seconds"])),
                (where, f"{name} s per item", spread_text(mode["per_item_s"])),
            ]
        if "batch_speedup_vs_naive" in batch:
            rows += [
                (where, "batch sum of stages s", spread_text(batch["batch"]["sum_of_stages_s"])),
                (where, "batch overlap (sum of stages / wall)",
                 spread_text(batch["batch"]["overlap"], "x")),
                (where, "batch ms per item by stage", _stages(batch["batch"]["stage_ms_per_item"])),
                (where, "batch speed-up vs naive",
                 spread_text(batch["batch_speedup_vs_naive"], "x")),
                (where, "batch speed-up vs reused Editor",
                 spread_text(batch["batch_speedup_vs_reused"], "x")),
            ]
        for size, other in batch.get("other_batch_sizes", {}).items():
            rows += [
                (where, f"batch --batch-size {size} s", spread_text(other["seconds"])),
                (where, f"batch --batch-size {size} speed-up vs naive",
                 spread_text(other["speedup_vs_naive"], "x")),
            ]
        if "generation_alone_per_item_s" in batch:
            alone = batch["generation_alone_per_item_s"]
            rows += [
                (where, f"pipeline calls alone s per item, {batch['batch_size']} per call",
                 spread_text(alone["batched"])),
                (where, "pipeline calls alone s per item, 1 per call",
                 spread_text(alone["one_per_call"])),
                (where, "ceiling: naive / (items x batched generation alone)",
                 f"{_number(batch['batch_speedup_ceiling'])}x"),
            ]
        rows += [
            (where, "reused Editor speed-up vs naive",
             spread_text(batch["reused_speedup_vs_naive"], "x")),
            (where, "naive: reload cost per image s", spread_text(batch["reload_per_image_s"])),
        ]
        first = results.get("startup", {}).get("first_result", {})
        if "process_s" in first and "seconds" in batch["batch"]:
            # a shell loop of `regionedit edit`, one process per image, from the start-up figure
            per_process = first["process_s"]["median"] * batch["items"]
            speedup = per_process / batch["batch"]["seconds"]["median"]
            rows.append((where, "derived: one `regionedit edit` process per image s / batch",
                         f"{_number(per_process)} / {_number(speedup)}x"))
    llm = results.get("llm")
    if llm:
        where = f"llm {llm['pairs']} pairs"
        rows += [
            (where, f"sequential requests s ({llm['sequential_requests']['requests']} requests)",
             spread_text(llm["sequential_requests"]["seconds"])),
            (where, f"sequential library loop s ({llm['sequential_loop']['requests']} requests)",
             spread_text(llm["sequential_loop"]["seconds"])),
        ]
        concurrent = llm["concurrent"]
        if "pending" in concurrent:
            rows.append((where, "concurrent s", f"pending: {concurrent['pending']}"))
        else:
            rows += [
                (where, f"concurrent s (x{llm['concurrency']}; ideal "
                        f"{_number(llm['ideal_concurrent_s'])} s, "
                        f"{_number(llm['ideal_concurrent_at_round_trip_s'])} s at the "
                        f"{_number(llm['measured_round_trip_s'] * 1000)} ms round trip)",
                 spread_text(concurrent["seconds"])),
                (where, "speed-up vs sequential requests",
                 spread_text(llm["speedup_vs_sequential_requests"], "x")),
                (where, "speed-up vs sequential library loop",
                 spread_text(llm["speedup_vs_sequential_loop"], "x")),
            ]
    startup = results.get("startup")
    if startup:
        rows += [
            ("startup", "python -c pass s", spread_text(startup["python_pass_s"])),
            ("startup", "import regionedit, in-process s",
             spread_text(startup["import_in_process_s"])),
            ("startup", "import regionedit, whole process s",
             spread_text(startup["import_process_s"])),
            ("startup", "regionedit --help, whole process s",
             spread_text(startup["help_process_s"])),
        ]
        first = startup["first_result"]
        if "skipped" in first:
            rows.append(("startup", "first result (regionedit edit)", first["skipped"]))
        else:
            rows += [
                ("startup", "first result (regionedit edit) s", spread_text(first["process_s"])),
                ("startup", "first result peak RSS MB", spread_text(first["peak_rss_mb"])),
            ]
    memory = results.get("memory")
    if memory:
        large = memory["large_edit"]
        where = f"memory {large['input'].split()[0]}"
        rows += [
            (where, "peak RSS MB (after model warm-up)",
             f"{_number(large['peak_rss_mb'])} ({_number(large['rss_after_warmup_mb'])})"),
            (where, "regionedit own ms", spread_text(large["own_ms"])),
            (where, "own ms by stage", _stages(large["own_stage_ms"])),
        ]
        if "first_edit" in large:  # results from before stop 12 have no first edit apart
            rows += [
                (where, "first edit at this size: own ms", _number(large["first_edit"]["own_ms"])),
                (where, "first edit: own ms by stage", " ".join(
                    f"{name} {_number(ms)}" for name, ms in large["first_edit"]["own_stage_ms"].items()
                )),
            ]
        rows += [
            (where, "segmentation model / pipeline ms",
             f"{spread_text(large['segment_model_ms'])} / "
             f"{spread_text(large['pipeline_in_edit_ms'])}"),
        ]
        for count, run in memory["batch"]["runs"].items():
            rows.append((f"memory batch {count}", "peak RSS MB / seconds",
                         f"{_number(run['peak_rss_mb'])} / {_number(run['seconds'])}"))
        rows.append(("memory batch", "peak RSS growth, long over short",
                     f"{memory['batch']['growth']:+.1%}"))
        large_batch = memory.get("large_batch", {})
        for size, run in large_batch.get("runs", {}).items():
            rows.append((f"memory {large_batch['items']} large",
                         f"--batch-size {size}: peak RSS MB / seconds",
                         f"{_number(run['peak_rss_mb'])} / {_number(run['seconds'])}"))
    return rows


def _stages(stages: dict[str, dict]) -> str:
    return " ".join(f"{name} {_number(value['median'])}" for name, value in stages.items())


def format_table(results: dict) -> str:
    """The figures, then the targets with their verdicts, as plain-text tables."""
    rows = _rows(results)
    width = [max(len(r[i]) for r in rows) for i in range(2)] if rows else [0, 0]
    lines = ["figures: median [min-max] of repeated runs", ""]
    for section, figure, measured in rows:
        lines.append(f"{section:<{width[0]}}  {figure:<{width[1]}}  {measured}")
    lines += ["", "targets:"]
    for verdict in results.get("targets", []):
        measured = verdict["measured"]
        shown = "not measured" if measured is None else _number(measured)
        met = {True: "met", False: "MISSED", None: "-"}[verdict["met"]]
        lines.append(f"  {met:<6}  {verdict['figure']}: {shown} (target {verdict['target']})")
    return "\n".join(lines)
