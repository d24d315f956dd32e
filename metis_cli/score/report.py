"""A static HTML page per decode dir (``scores/report.html``) to look at and listen to.

The page shows the summary table, the distribution of every metric, and for the first utterances the
reference, the input and the output side by side: an audio player and a spectrogram for each, with the
transcript, the ASR hypothesis and the utterance's metrics. Audio is linked by relative path, so the
page works from disk (no server) as long as the experiment and data folders move together.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import numpy as np

from metis_cli.data.datadir import id_path
from metis_cli.data.decode_dir import DecodeDir
from metis_cli.score.scoring import METRIC_COLUMNS, read_per_utt
from metis_cli.task_registry import TASKS

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.utt { border-top: 2px solid #888; margin-top: 1.5em; padding-top: 0.5em; }
.row { display: flex; gap: 1em; flex-wrap: wrap; }
.cell { flex: 1; min-width: 260px; }
.cell img { width: 100%; }
.failed { color: #b00; }
audio { width: 100%; }
code { background: #f4f4f4; padding: 0 3px; }
.sub { background: #fff1c2; } .del { background: #ffd9d9; } .ins { background: #d9ecff; }
img { max-width: 100%; height: auto; }
"""


def _spectrogram_png(wavs: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metis_cli.dsp import log_mel_spectrogram

    fig, axes = plt.subplots(1, len(wavs), figsize=(4.2 * len(wavs), 2.2), squeeze=False)
    for ax, (label, wav) in zip(axes[0], wavs.items(), strict=False):
        mel = log_mel_spectrogram(wav, 16000, n_fft=512, hop=160, n_mels=64)
        ax.imshow(
            mel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, len(wav) / 16000, 0, 64), vmin=mel.max() - 12
        )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _distribution_png(rows: dict[str, dict], columns: list[str], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {}
    for column in columns:
        values = []
        for row in rows.values():
            try:
                values.append(float(row.get(column, "")))
            except ValueError:
                continue
        values = [v for v in values if not math.isnan(v)]
        if values:
            data[column] = values
    if not data:
        return False
    fig, axes = plt.subplots(1, len(data), figsize=(2.6 * len(data), 2.2), squeeze=False)
    for ax, (column, values) in zip(axes[0], data.items(), strict=False):
        ax.hist(values, bins=min(20, max(3, len(values) // 2)), color="#4a7ab5")
        ax.set_title(column, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _audio_tag(source: str | None, page_dir: Path) -> str:
    if not source or source.rstrip().endswith("|") or not Path(source).is_file():
        return "<em>not available</em>"
    relative = os.path.relpath(Path(source).resolve(), page_dir.resolve())
    return f'<audio controls preload="none" src="{html.escape(relative)}"></audio>'


COUNT_COLUMNS = ("word_errors", "ref_words", "word_subs", "word_dels", "word_ins", "char_errors", "ref_chars")


HTML_MARKS = {
    "=": "{r}",
    "S": "<span class='sub' title='substitution of {r}'><s>{r}</s> {h}</span>",
    "D": "<span class='del' title='deletion'><s>{r}</s></span>",
    "I": "<span class='ins' title='insertion'>+{h}</span>",
}


def _aligned_html(reference: str, hypothesis: str) -> str:
    """The ASR hypothesis aligned to the reference: substitutions, deletions and insertions marked."""
    from metis_cli.score.metrics import aligned_text

    return aligned_text(reference, hypothesis, HTML_MARKS, html.escape)


def inputs_of(decode: DecodeDir) -> dict[str, str]:
    """The unprocessed inputs of a decode dir's task (its registry ``input_scp``), by utterance; none for
    tasks without one (or for a decode-dir kind the registry does not know)."""
    scp = TASKS[decode.task].input_scp if decode.task in TASKS else None
    return decode.reference(scp) if scp else {}


def write_report(decode_dir, max_utts: int = 20) -> Path:
    """Writes ``<decode_dir>/scores/report.html`` (and its images under ``scores/report/``)."""
    from metis_cli.audio import load_audio
    from metis_cli.errors import AudioError

    decode = DecodeDir.load(decode_dir)
    scores = decode.path / "scores"
    media = scores / "report"
    media.mkdir(parents=True, exist_ok=True)
    summary = json.loads((scores / "summary.json").read_text())
    rows = read_per_utt(scores / "per_utt.tsv")
    outputs, references, texts = decode.outputs(), decode.reference("wav.scp"), decode.reference("text")
    input_scp = TASKS[decode.task].input_scp
    inputs = inputs_of(decode)
    metric_columns = [c for cols in METRIC_COLUMNS.values() for c in cols if c not in ("hyp_text",)]

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(decode.path.name)} scores</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(str(decode.path))}</h1>",
        f"<p>task <code>{decode.task}</code>, data <code>{html.escape(str(decode.data_dir))}</code>, "
        f"scored {summary['counts']['scored']} of {summary['counts']['references']} "
        f"({summary['counts']['failed']} failed)</p>",
        "<table><tr><th>metric</th><th>mean</th><th>95% CI ±</th><th>n</th></tr>",
    ]
    for name, m in summary["metrics"].items():
        ci = "" if m["ci95"] is None or (isinstance(m["ci95"], float) and math.isnan(m["ci95"])) else f"{m['ci95']:.3f}"
        parts.append(f"<tr><td>{name}</td><td>{m['mean']:.3f}</td><td>{ci}</td><td>{m['n']}</td></tr>")
    parts.append("</table>")
    if _distribution_png(
        rows,
        [c for c in metric_columns if c not in COUNT_COLUMNS],
        media / "distributions.png",
    ):
        parts.append("<h2>Distributions</h2><img src='report/distributions.png' alt='metric distributions'>")
    if summary["failures"]:
        parts.append("<h2>Failures</h2><ul>")
        parts += [
            f"<li class='failed'>{html.escape(f['utt'])}: {html.escape(f['reason'])}</li>" for f in summary["failures"]
        ]
        parts.append("</ul>")

    parts.append(f"<h2>Utterances (first {max_utts})</h2>")
    for utt in sorted(outputs)[:max_utts]:
        row = rows.get(utt, {})
        sources = {"reference": references.get(utt), f"input ({input_scp})": inputs.get(utt), "output": outputs[utt]}
        sources = {k: v for k, v in sources.items() if v}
        wavs = {}
        for label, source in sources.items():
            try:
                wavs[label] = load_audio(source, 16000, utt_id=utt, commands=True)[0]
            except AudioError:
                continue
        image = id_path(media, utt, ".png")
        if wavs:
            _spectrogram_png(wavs, image)
        values = ", ".join(f"{c}={row[c]}" for c in metric_columns if row.get(c))
        parts.append(f"<div class='utt'><h3>{html.escape(utt)}</h3>")
        if texts.get(utt):
            parts.append(f"<p>text: {html.escape(texts[utt])}</p>")
        if row.get("hyp_text") and texts.get(utt):
            parts.append(f"<p>ASR: {_aligned_html(texts[utt], row['hyp_text'])}</p>")
        elif row.get("hyp_text"):
            parts.append(f"<p>ASR: {html.escape(row['hyp_text'])}</p>")
        if row.get("failure"):
            parts.append(f"<p class='failed'>failed: {html.escape(row['failure'])}</p>")
        if values:
            parts.append(f"<p><small>{html.escape(values)}</small></p>")
        parts.append("<div class='row'>")
        for label, source in sources.items():
            parts.append(f"<div class='cell'><b>{label}</b><br>{_audio_tag(source, scores)}</div>")
        parts.append("</div>")
        if wavs:
            parts.append(f"<img src='report/{html.escape(image.name)}' alt='spectrograms of {html.escape(utt)}'>")
        parts.append("</div>")
    parts.append("</body></html>")
    page = scores / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
