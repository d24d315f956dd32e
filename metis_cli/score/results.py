"""RESULTS.md: one table per task and test set, the commands that made each row, and the environment."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from metis_cli.env import command_line, environment
from metis_cli.errors import MetisError

# Column order in the tables; anything else a summary has goes after these.
ORDER = (
    "wer",
    "wer_sub",
    "wer_del",
    "wer_ins",
    "cer",
    "sim",
    "sim_other",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
    "dnsmos_p808",
    "pesq_wb",
    "pesq_nb",
    "stoi",
    "estoi",
    "sisdr",
    "mcd",
)


def _short(path) -> str:
    """A path relative to the working directory when it lies below it (tables stay readable)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _short_command(command: str) -> str:
    """A command line with the working directory's absolute paths made relative (a committed RESULTS.md
    names no one's home directory)."""
    return command.replace(str(Path.cwd().resolve()) + "/", "")


def _cell(metric: dict | None) -> str:
    if metric is None:
        return "-"
    ci = metric.get("ci95")
    ci_text = "" if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f" ± {ci:.2f}"
    return f"{metric['mean']:.2f}{ci_text}"


def load_summaries(decode_dirs) -> list[dict]:
    summaries = []
    for d in decode_dirs:
        path = Path(d) / "scores" / "summary.json"
        if not path.is_file():
            raise MetisError(f"{path}: not found; run `metis score {d}` first")
        summary = json.loads(path.read_text())
        decode_info = Path(d) / "decode.json"
        summary["decode_command"] = (
            json.loads(decode_info.read_text()).get("command") if decode_info.is_file() else None
        )
        summaries.append(summary)
    return summaries


def read_stage_times(path) -> list[dict]:
    """Rows of a recipe's stage_times.tsv (``<stage> <name> <seconds> <finished at> <command>``, one per
    stage run) summed per stage: a killed and resumed stage counts both runs, a skipped rerun a second."""
    stages: dict[int, dict] = {}
    path = Path(path)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        try:
            stage, name, seconds, finished, command = int(fields[0]), fields[1], int(fields[2]), fields[3], fields[4]
        except (IndexError, ValueError):
            raise MetisError(
                f"{path}: line {number}: expected '<stage> <name> <seconds> <finished at> <command>' (tab-separated)"
            ) from None
        row = stages.setdefault(stage, {"stage": stage, "name": name, "seconds": 0, "runs": 0, "commands": []})
        row["seconds"] += seconds
        row["runs"] += 1
        row["finished"] = finished
        if command not in row["commands"]:
            row["commands"].append(command)
    return [stages[k] for k in sorted(stages)]


def render_stage_times(rows: list[dict]) -> list[str]:
    lines = ["## Recipe stages", "", "| stage | name | minutes | runs | last finished |", "|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['name']} | {r['seconds'] / 60:.1f} | {r['runs']} | {r['finished']} |")
    total = sum(r["seconds"] for r in rows)
    lines += [
        f"| | total | {total / 60:.1f} | | |",
        "",
        "Commands (each stage's time is summed over the runs of these):",
        "",
    ]
    commands = [c for r in rows for c in r["commands"]]
    lines += [f"- `{_short_command(c)}`" for c in dict.fromkeys(commands)] + [""]
    return lines


def render_results(summaries: list[dict], title: str = "Results", stage_times: list[dict] | None = None) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in summaries:
        if s.get("error"):
            continue
        groups.setdefault((s["task"], s.get("set") or Path(s["data_dir"]).name), []).append(s)
    lines = [
        f"# {title}",
        "",
        f"Written by `{_short_command(command_line())}` on {time.strftime('%Y-%m-%d %H:%M')}.",
        "Each cell: mean ± half width of the 95% confidence interval (WER and CER: corpus-level %, bootstrap).",
        "",
    ]
    if stage_times:
        lines += render_stage_times(stage_times)
    for (task, data_set), rows in sorted(groups.items()):
        names = [n for n in ORDER if any(n in r["metrics"] for r in rows)]
        names += sorted({n for r in rows for n in r["metrics"]} - set(names))
        lines += [
            f"## {task}: {data_set}",
            "",
            "| decode dir | scored | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names),
        ]
        for r in rows:
            counts = r["counts"]
            cells = " | ".join(_cell(r["metrics"].get(n)) for n in names)
            lines.append(f"| `{_short(r['decode_dir'])}` | {counts['scored']}/{counts['references']} | {cells} |")
        lines += ["", "Commands:", ""]
        for r in rows:
            if r.get("decode_command"):
                lines.append(f"- decode `{_short(r['decode_dir'])}`: `{_short_command(r['decode_command'])}`")
            if r.get("command"):
                lines.append(f"- score: `{_short_command(r['command'])}`")
        lines.append("")
    failed = [s for s in summaries if s.get("error")]
    if failed:
        lines += (
            ["## Not scored", ""]
            + [f"- `{_short(s['decode_dir'])}`: {_short_command(s['error'])}" for s in failed]
            + [""]
        )
    lines += ["## Environment", "", "```"] + [f"{k}: {v}" for k, v in environment().items()] + ["```", ""]
    return "\n".join(lines)


def write_results(decode_dirs, output, title: str = "Results", stage_times=None) -> Path:
    """RESULTS.md from scored decode dirs, with the recipe's stage times when a stage_times.tsv is given."""
    output = Path(output)
    times = read_stage_times(stage_times) if stage_times is not None and Path(stage_times).is_file() else None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_results(load_summaries(decode_dirs), title=title, stage_times=times), encoding="utf-8")
    return output
