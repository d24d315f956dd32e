"""One page comparing systems: every decode dir scored together (``metis score A B C --compare PAGE``).

- a table of each system's means (95% intervals) with the direction of every metric (higher or lower is
  better), and, against a baseline dir, the paired difference over the utterances both scored, with its 95%
  interval (bootstrap over utterances; WER and CER as corpus-level differences);
- one plot per metric of the systems' means with their intervals, labelled, as wide as the page;
- the utterances, the worst first by a chosen metric (of the last system): the reference and the input, then
  every system's player, its values and its ASR hypothesis aligned to the reference (substitutions, deletions
  and insertions marked).

Audio is linked by relative paths, so the page opens from disk next to the decode dirs.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import numpy as np

from metis_cli.data.decode_dir import DecodeDir
from metis_cli.errors import MetisError
from metis_cli.score.report import STYLE, _aligned_html, _audio_tag, inputs_of
from metis_cli.score.scoring import read_per_utt

# +1: higher is better; -1: lower is better; 0: neither (sim_other: how close to the wrong voice, a floor).
DIRECTION = {
    "wer": -1,
    "cer": -1,
    "wer_sub": -1,
    "wer_del": -1,
    "wer_ins": -1,
    "sim": 1,
    "sim_other": 0,
    "dnsmos_sig": 1,
    "dnsmos_bak": 1,
    "dnsmos_ovrl": 1,
    "dnsmos_p808": 1,
    "pesq_wb": 1,
    "pesq_nb": 1,
    "stoi": 1,
    "estoi": 1,
    "sisdr": 1,
    "mcd": -1,
}
# corpus-level rates: (errors column, reference length column)
RATES = {
    "wer": ("word_errors", "ref_words"),
    "cer": ("char_errors", "ref_chars"),
    "wer_sub": ("word_subs", "ref_words"),
    "wer_del": ("word_dels", "ref_words"),
    "wer_ins": ("word_ins", "ref_words"),
}
COMPARE_STYLE = """
.sys { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 0.6em; }
.box { border: 1px solid #ddd; padding: 0.4em; overflow-wrap: anywhere; }
.better { color: #067d17; } .worse { color: #b00; }
table.means { table-layout: fixed; width: 100%; } table.means td, table.means th { overflow-wrap: anywhere; }
table.means th:first-child { width: 9em; } .legend { overflow-wrap: anywhere; }
"""


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _value(rows: dict, utt: str, metric: str) -> float:
    """A metric's per-utterance value (rates: the utterance's own error rate, %)."""
    row = rows.get(utt) or {}
    if metric in RATES:
        errors, total = (_float(row.get(c)) for c in RATES[metric])
        return 100 * errors / total if total and total > 0 else math.nan
    return _float(row.get(metric))


def paired_difference(rows: dict, base: dict, metric: str, rounds: int = 1000, seed: int = 0) -> dict | None:
    """Mean difference (system - baseline) over the utterances both scored, with a bootstrap 95% half-width;
    rates as corpus-level differences (errors / reference length of the same utterances)."""
    utts = sorted(u for u in rows if u in base and not rows[u].get("failure") and not base[u].get("failure"))
    rng = np.random.default_rng(seed)
    if metric in RATES:
        e, t = RATES[metric]
        data = np.array(
            [[_float(rows[u].get(e)), _float(base[u].get(e)), _float(rows[u].get(t))] for u in utts], dtype=np.float64
        ).reshape(-1, 3)
        data = data[~np.isnan(data).any(axis=1)]
        if not len(data) or data[:, 2].sum() <= 0:
            return None

        def stat(d):
            return 100 * (d[:, 0].sum() - d[:, 1].sum()) / max(d[:, 2].sum(), 1)
    else:
        data = np.array([[_value(rows, u, metric), _value(base, u, metric)] for u in utts], dtype=np.float64)
        data = data.reshape(-1, 2)
        data = data[~np.isnan(data).any(axis=1)]
        if not len(data):
            return None

        def stat(d):
            return float((d[:, 0] - d[:, 1]).mean())

    picks = rng.integers(0, len(data), size=(rounds, len(data)))
    samples = np.array([stat(data[p]) for p in picks])
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"diff": float(stat(data)), "ci95": float((high - low) / 2), "n": int(len(data))}


def _label(path: Path, names: list[Path]) -> str:
    """A short, still unique name of a decode dir: its path from the dirs' common parent."""
    parent = Path(os.path.commonpath([str(p.resolve()) for p in names])) if len(names) > 1 else path.parent
    return os.path.relpath(path.resolve(), parent) if path.resolve() != parent else path.name


def _plot(systems: list[dict], metrics: list[str], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if any(m in s["summary"] for s in systems)]
    if not metrics:
        return False
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 0.45 * len(systems) + 1.6 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        means = [s["summary"].get(metric, {}).get("mean", math.nan) for s in systems]
        cis = [s["summary"].get(metric, {}).get("ci95", 0.0) or 0.0 for s in systems]
        y = np.arange(len(systems))
        ax.barh(y, means, xerr=cis, color="#4c72b0", ecolor="#222", capsize=2)
        ax.set_yticks(y, [f"S{i + 1}" for i in range(len(systems))])
        ax.invert_yaxis()
        arrow = {1: " (higher is better)", -1: " (lower is better)"}.get(DIRECTION.get(metric, 0), "")
        ax.set_xlabel(f"{metric}{arrow}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_comparison(
    decode_dirs, out, baseline=None, worst: str | None = None, max_utts: int = 20, metrics: list[str] | None = None
) -> Path:
    """Writes the comparison page ``out`` (and its plot beside it, ``<out stem>_files/``) for scored decode dirs."""
    dirs = [Path(d) for d in decode_dirs]
    out = Path(out)
    if baseline is not None and Path(baseline).resolve() not in [d.resolve() for d in dirs]:
        dirs.insert(0, Path(baseline))
    systems = []
    for d in dirs:
        summary_file = d / "scores" / "summary.json"
        if not summary_file.is_file():
            raise MetisError(f"{d}: not scored (no scores/summary.json); run metis score on it first")
        decode = DecodeDir.load(d)
        systems.append(
            {
                "path": d,
                "name": _label(d, dirs),
                "decode": decode,
                "outputs": decode.outputs(),  # read once: the page looks up every utterance
                "inputs": inputs_of(decode),
                "summary": json.loads(summary_file.read_text())["metrics"],
                "rows": read_per_utt(d / "scores" / "per_utt.tsv"),
            }
        )
    base = next((s for s in systems if baseline is not None and s["path"].resolve() == Path(baseline).resolve()), None)
    names = [m for m in DIRECTION if any(m in s["summary"] for s in systems)]
    names += sorted({m for s in systems for m in s["summary"]} - set(names))
    if metrics:
        names = [m for m in names if m in metrics or m.split("_")[0] in metrics]
    media = out.parent / f"{out.stem}_files"
    media.mkdir(parents=True, exist_ok=True)
    page = out.parent

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>comparison: {len(systems)} systems</title><style>{STYLE}{COMPARE_STYLE}</style></head><body>",
        f"<h1>{len(systems)} systems compared</h1>",
        "<p>Means with 95% confidence half-widths; ↑ higher is better, ↓ lower is better"
        + (f"; Δ: paired difference against the baseline <b>{html.escape(base['name'])}</b>" if base else "")
        + ".</p>",
        "<ol class='legend'>"
        + "".join(
            f"<li><b>S{i + 1}</b> {html.escape(s['name'])} <small>({s['decode'].task}"
            + (", baseline" if s is base else "")
            + ")</small></li>"
            for i, s in enumerate(systems)
        )
        + "</ol>",
        "<table class='means'><tr><th>metric</th>"
        + "".join(f"<th>S{i + 1}</th>" for i in range(len(systems)))
        + "</tr>",
    ]
    for m in names:
        cells = []
        for s in systems:
            v = s["summary"].get(m)
            text = "-" if v is None else f"{v['mean']:.3g}" + (f" ± {v['ci95']:.2g}" if _finite(v["ci95"]) else "")
            if base is not None and s is not base and v is not None:
                d = paired_difference(s["rows"], base["rows"], m)
                if d is not None:
                    text += f"<br><small class='{_judge(m, d)}'>Δ {d['diff']:+.3g} ± {d['ci95']:.2g}</small>"
            cells.append(f"<td>{text}</td>")
        parts.append(f"<tr><td>{html.escape(m)} {_arrow(m)}</td>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    if _plot(systems, names, media / "means.png"):
        parts.append(f"<img src='{html.escape(media.name)}/means.png' alt='means of every metric per system'>")

    # the utterances, the worst first
    utts = sorted({u for s in systems for u in s["outputs"]})
    key_system = next((s for s in reversed(systems) if s is not base), systems[-1])
    if worst is None:
        worst = "wer" if "wer" in key_system["summary"] else next(iter(key_system["summary"]), None)
    if worst is not None:
        sign = DIRECTION.get(worst, 1) or 1
        utts.sort(key=lambda u: (_worst_first(_value(key_system["rows"], u, worst), sign), u))
    shown = utts[:max_utts]
    order = f"worst first by {worst} of S{systems.index(key_system) + 1}" if worst else "by name"
    parts.append(f"<h2>Utterances ({len(shown)} of {len(utts)}, {html.escape(order)})</h2>")
    first = systems[0]["decode"]
    texts, refs = first.reference("text"), first.reference("wav.scp")
    for utt in shown:
        parts.append(f"<div class='utt'><h3>{html.escape(utt)}</h3>")
        if texts.get(utt):
            parts.append(f"<p>text: {html.escape(texts[utt])}</p>")
        parts.append("<div class='sys'>")
        parts.append(f"<div class='box'><b>reference</b><br>{_audio_tag(refs.get(utt), page)}</div>")
        for s in systems:
            spec_input = s["inputs"].get(utt)
            if spec_input and spec_input != refs.get(utt):
                parts.append(f"<div class='box'><b>input</b><br>{_audio_tag(spec_input, page)}</div>")
                break
        for i, s in enumerate(systems):
            row = s["rows"].get(utt, {})
            values = ", ".join(
                f"{m}={_value(s['rows'], utt, m):.3g}" for m in names if _finite(_value(s["rows"], utt, m))
            )
            asr = ""
            if row.get("hyp_text") is not None and row.get("hyp_text") != "" and texts.get(utt):
                asr = f"<br>ASR: {_aligned_html(texts[utt], row['hyp_text'])}"
            failed = f"<br><span class='failed'>{html.escape(row['failure'])}</span>" if row.get("failure") else ""
            player = _audio_tag(s["outputs"].get(utt), page)
            parts.append(
                f"<div class='box'><b>S{i + 1}</b> <small>{html.escape(s['name'])}</small><br>{player}"
                f"<br><small>{html.escape(values)}</small>{asr}{failed}</div>"
            )
        parts.append("</div></div>")
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _arrow(metric: str) -> str:
    return {1: "↑", -1: "↓"}.get(DIRECTION.get(metric, 0), "")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _worst_first(value: float, sign: int) -> float:
    """Sort key: the worst value first (the highest of a lower-is-better metric), no value last."""
    return sign * value if math.isfinite(value) else math.inf


def _judge(metric: str, d: dict) -> str:
    """'better' / 'worse' when the interval excludes 0 in a metric with a direction, else ''."""
    direction = DIRECTION.get(metric, 0)
    if not direction or abs(d["diff"]) <= d["ci95"]:
        return ""
    return "better" if d["diff"] * direction > 0 else "worse"
