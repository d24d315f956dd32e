"""metis score on decode dirs: outputs, caching, parallel jobs, bad input, RESULTS.md, HTML report."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.data.datadir import DataDir
from metis_cli.data.decode_dir import DecodeDir, link_decode_dir, write_decode_dir
from metis_cli.score.scoring import Scorers, plan_jobs, read_per_utt, score_decode_dir

runner = CliRunner()
FAST = ["sisdr", "stoi"]


@pytest.fixture(scope="module")
def scored_gt(tiny_corpus, tmp_path_factory):
    """Ground truth of mini_test scored as TTS output with every default metric (the ceiling)."""
    path = tmp_path_factory.mktemp("exp") / "tts_gt"
    link_decode_dir(tiny_corpus / "mini_test", path, "tts")
    result = runner.invoke(app, ["score", str(path), "--nj", "2", "--report-utts", "3"])
    assert result.exit_code == 0, result.output
    return path


def test_ground_truth_scores(scored_gt):
    summary = json.loads((scored_gt / "scores" / "summary.json").read_text())
    assert summary["task"] == "tts" and summary["counts"] == {"references": 6, "outputs": 6, "scored": 6, "failed": 0}
    m = summary["metrics"]
    assert set(m) == {"wer", "cer", "sim", "sim_other", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"} | {
        "wer_sub",
        "wer_del",
        "wer_ins",
    }
    split = m["wer_sub"]["mean"] + m["wer_del"]["mean"] + m["wer_ins"]["mean"]
    assert split == pytest.approx(m["wer"]["mean"], abs=1e-9)
    assert m["wer"]["mean"] < 35 and m["sim"]["mean"] > 0.8 and m["dnsmos_ovrl"]["mean"] > 2.5
    # Each utterance's own speaker's prompt is far closer than another speaker's.
    assert m["sim"]["mean"] > m["sim_other"]["mean"] + 0.05
    assert m["wer"]["n"] == 6 and m["sim"]["ci95"] > 0
    rows = read_per_utt(scored_gt / "scores" / "per_utt.tsv")
    assert len(rows) == 6 and all(r["hyp_text"] for r in rows.values())
    text = (scored_gt / "scores" / "result.txt").read_text()
    assert "scored 6 of 6" in text and "wer" in text


def test_rerun_computes_nothing_until_an_output_changes(scored_gt):
    decode = DecodeDir.load(scored_gt)
    per_utt = scored_gt / "scores" / "per_utt.tsv"
    previous, stamp = read_per_utt(per_utt), per_utt.stat().st_mtime
    jobs, failures, refs = plan_jobs(decode, ("wer", "sim", "dnsmos"), previous, stamp)
    assert jobs == [] and failures == {} and refs == 6
    jobs, _, _ = plan_jobs(decode, ("wer", "sim", "dnsmos", "sisdr"), previous, stamp)
    assert len(jobs) == 6 and {j.metrics for j in jobs} == {("sisdr",)}, "only the metric not computed yet"


def test_rows_scored_before_the_error_kinds_get_them_without_asr(scored_gt, tmp_path, monkeypatch):
    """A per_utt.tsv written before substitutions/deletions/insertions were counted: they come from the stored
    hypotheses; the ASR does not run again."""
    path = tmp_path / "old"
    shutil.copytree(scored_gt, path, symlinks=True)
    per_utt = path / "scores" / "per_utt.tsv"
    lines = [line.split("\t") for line in per_utt.read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name not in ("word_subs", "word_dels", "word_ins")]
    stamp = per_utt.stat().st_mtime
    per_utt.write_text("".join("\t".join(cells[i] for i in keep) + "\n" for cells in lines))
    os.utime(per_utt, (stamp, stamp))
    from metis_cli.score import models

    def no_asr(*args, **kwargs):
        raise AssertionError("the ASR ran again")

    monkeypatch.setattr(models, "load_asr", no_asr)
    monkeypatch.setattr("metis_cli.score.scoring.check_scorers", lambda *a, **k: None)
    summary = score_decode_dir(path, metrics=["wer"])
    old = json.loads((scored_gt / "scores" / "summary.json").read_text())["metrics"]
    assert {k: summary["metrics"][k]["mean"] for k in ("wer_sub", "wer_del", "wer_ins")} == {
        k: old[k]["mean"] for k in ("wer_sub", "wer_del", "wer_ins")
    }


def test_mcd_values_of_the_earlier_frame_by_frame_kind_are_computed_again(tiny_corpus, tmp_path):
    path = tmp_path / "resynth"
    link_decode_dir(tiny_corpus / "mini_test", path, "resynth")
    first = score_decode_dir(path, metrics=["mcd"])["metrics"]["mcd"]["mean"]
    assert 0 <= first < 1e-6  # the ground truth against itself
    per_utt, record = path / "scores" / "per_utt.tsv", path / "scores" / "scorers.json"
    stamp = per_utt.stat().st_mtime
    lines = per_utt.read_text().splitlines()
    column = lines[0].split("\t").index("mcd")
    rows = [line.split("\t") for line in lines[1:]]
    for cells in rows:
        cells[column] = "44.5"  # what the frame-by-frame MCD wrote, with no record of its scorer
    per_utt.write_text("\n".join([lines[0], *("\t".join(c) for c in rows)]) + "\n")
    os.utime(per_utt, (stamp, stamp))
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "mcd"}))
    assert score_decode_dir(path, metrics=["mcd"])["metrics"]["mcd"]["mean"] == first


def test_changed_output_is_rescored(tiny_corpus, tmp_path):
    path = tmp_path / "se"
    link_decode_dir(tiny_corpus / "mini_se_test", path, "se", "noisy.scp")
    score_decode_dir(path, metrics=FAST)
    decode = DecodeDir.load(path)
    per_utt = path / "scores" / "per_utt.tsv"
    stamp = per_utt.stat().st_mtime
    assert plan_jobs(decode, FAST, read_per_utt(per_utt), stamp)[0] == []
    shutil.copy(decode.outputs()[decode.data.utt_ids()[0]], tmp_path / "copy.wav")
    write_decode_dir(
        path, "se", decode.data_dir, {**decode.outputs(), decode.data.utt_ids()[0]: str(tmp_path / "copy.wav")}
    )
    os.utime(tmp_path / "copy.wav", (stamp + 10, stamp + 10))
    jobs = plan_jobs(DecodeDir.load(path), FAST, read_per_utt(per_utt), stamp)[0]
    assert [j.utt for j in jobs] == [decode.data.utt_ids()[0]]


def test_a_narrower_rerun_keeps_earlier_metrics(scored_gt):
    before = json.loads((scored_gt / "scores" / "summary.json").read_text())["metrics"]
    summary = score_decode_dir(scored_gt, metrics=["sim"])
    assert summary["metrics"] == before
    assert read_per_utt(scored_gt / "scores" / "per_utt.tsv")[DecodeDir.load(scored_gt).data.utt_ids()[0]]["hyp_text"]


def test_parallel_jobs_give_the_same_numbers(tiny_corpus, tmp_path):
    for nj in (1, 2):
        link_decode_dir(tiny_corpus / "mini_se_test", tmp_path / f"nj{nj}", "se", "noisy.scp")
        score_decode_dir(tmp_path / f"nj{nj}", num_jobs=nj, metrics=FAST)
    one = json.loads((tmp_path / "nj1" / "scores" / "summary.json").read_text())["metrics"]
    two = json.loads((tmp_path / "nj2" / "scores" / "summary.json").read_text())["metrics"]
    assert one == two and one["sisdr"]["n"] == 6


def test_noisy_input_scores_below_its_clean_reference(tiny_corpus, tmp_path):
    link_decode_dir(tiny_corpus / "mini_se_test", tmp_path / "noisy", "se", "noisy.scp")
    link_decode_dir(tiny_corpus / "mini_se_test", tmp_path / "clean", "se", "wav.scp")
    noisy = score_decode_dir(tmp_path / "noisy", metrics=FAST)["metrics"]
    clean = score_decode_dir(tmp_path / "clean", metrics=FAST)["metrics"]
    assert clean["sisdr"]["mean"] > 60 and clean["stoi"]["mean"] > 0.99
    assert noisy["sisdr"]["mean"] < clean["sisdr"]["mean"] - 40 and noisy["stoi"]["mean"] < clean["stoi"]["mean"]


def compared(tiny_corpus, tmp_path):
    """The noisy input and the clean speech of mini_se_test, scored and compared by `metis score`."""
    link_decode_dir(tiny_corpus / "mini_se_test", tmp_path / "sys" / "noisy", "se", "noisy.scp")
    link_decode_dir(tiny_corpus / "mini_se_test", tmp_path / "sys" / "clean", "se", "wav.scp")
    dirs = [str(tmp_path / "sys" / n) for n in ("noisy", "clean")]
    result = runner.invoke(
        app, ["score", *dirs, "--metrics", "stoi,sisdr", "--baseline", dirs[0], "--worst", "stoi", "--report-utts", "4"]
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "sys" / "compare.html"


def test_the_comparison_page_pairs_systems_against_a_baseline(tiny_corpus, tmp_path):
    import re

    page = compared(tiny_corpus, tmp_path)
    text = page.read_text()
    assert "S1</b> noisy <small>(se, baseline)" in text and "S2</b> clean" in text
    # clean speech against its noisy input: better STOI and SI-SDR, each with a paired interval
    assert len(re.findall(r"<small class='better'>Δ \+", text)) == 3  # stoi, estoi, sisdr
    assert "stoi ↑" in text and "estoi ↑" in text and "sisdr ↑" in text
    shown = re.findall(r"<h3>(.*?)</h3>", text)
    assert len(shown) == 4 and "worst first by stoi of S2" in text
    rows = read_per_utt(tmp_path / "sys" / "clean" / "scores" / "per_utt.tsv")
    values = [float(rows[u]["stoi"]) for u in shown]
    assert values == sorted(values) and values[0] == min(float(r["stoi"]) for r in rows.values())
    assert text.count("<audio") == 4 * 4  # the reference, the input (noisy.scp), then each system
    assert (page.parent / "compare_files" / "means.png").is_file()
    result = runner.invoke(app, ["score", str(tmp_path / "sys" / "clean"), "--baseline", str(tmp_path)])
    assert result.exit_code == 1 and "is not one of the decode dirs scored" in result.output


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (bash tools/install.sh --test true)"
)
def test_the_comparison_page_fits_1400_px_and_every_player_loads(tiny_corpus, tmp_path):
    """Headless Chromium opens the page 1400 px wide: no horizontal scrolling, every audio element loads."""
    page = compared(tiny_corpus, tmp_path)
    probe = page.with_name("probe.html")
    script = (
        "<script>window.addEventListener('load', () => { const a = [...document.querySelectorAll('audio')];"
        " let ok = 0, bad = 0; const done = () => document.body.setAttribute('data-probe', JSON.stringify("
        "{scroll: document.documentElement.scrollWidth, width: window.innerWidth, n: a.length, ok, bad}));"
        " a.forEach(x => { x.preload = 'auto'; x.addEventListener('loadedmetadata', () => { ok++; done(); });"
        " x.addEventListener('error', () => { bad++; done(); }); x.load(); }); done(); });</script>"
    )
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    cmd = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,900",
        "--virtual-time-budget=8000",
        "--dump-dom",
        probe.as_uri(),
    ]
    import html as html_lib
    import re

    # Media loads outside Chromium's virtual time, so on a busy machine the DOM can be dumped before every
    # player has answered: then try again (a player that fails to load answers, and fails the test).
    for _ in range(3):
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
        found = re.search(r'data-probe="([^"]*)"', dom)
        assert found, dom[-500:]
        state = json.loads(html_lib.unescape(found.group(1)))
        if state["ok"] + state["bad"] == state["n"]:
            break
    assert state["scroll"] <= state["width"] == 1400, state
    assert state["n"] == 16 and state["ok"] == 16 and state["bad"] == 0, state


def test_bad_outputs_are_failures_and_the_rest_is_scored(tiny_corpus, tmp_path):
    data = DataDir(tiny_corpus / "mini_se_test")
    utts = data.utt_ids()
    good = data.read("noisy.scp")
    silent, clipped, rate, broken = (tmp_path / f"{n}.wav" for n in ("silent", "clipped", "rate", "broken"))
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    sf.write(clipped, np.sign(np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    sf.write(rate, 0.1 * np.sin(np.arange(22050) / 5).astype(np.float32), 22050)
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    outputs = {
        utts[0]: str(silent),
        utts[1]: str(clipped),
        utts[2]: str(rate),
        utts[3]: str(broken),
        utts[4]: good[utts[4]],
        "ghost_utt": good[utts[4]],
    }
    write_decode_dir(tmp_path / "dec", "se", data.path, outputs, sample_rate=16000)
    result = runner.invoke(app, ["score", str(tmp_path / "dec"), "--metrics", "sisdr", "--no-report"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "dec" / "scores" / "summary.json").read_text())
    reasons = {f["utt"]: f["reason"] for f in summary["failures"]}
    assert "silent output" in reasons[utts[0]]
    assert "clipped output" in reasons[utts[1]]
    assert "sample rate 22050 Hz, decode.json says 16000 Hz" in reasons[utts[2]]
    assert "cannot" in reasons[utts[3]] and utts[3] in reasons[utts[3]]
    assert "no output" in reasons[utts[5]]
    assert "not an utterance of" in reasons["ghost_utt"]
    assert summary["counts"]["scored"] == 1 and summary["metrics"]["sisdr"]["n"] == 1
    assert "6 failed" in result.output


def test_unreadable_decode_dir_is_reported_and_nothing_scored_exits_1(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["score", str(tmp_path / "empty")])
    assert (
        result.exit_code == 1 and "decode.json: missing" in result.output and "nothing could be scored" in result.output
    )
    summary = json.loads((tmp_path / "empty" / "scores" / "summary.json").read_text())
    assert summary["counts"]["scored"] == 0 and summary["error"]


def test_one_bad_dir_among_good_ones_still_exits_0(tiny_corpus, tmp_path):
    link_decode_dir(tiny_corpus / "mini_se_test", tmp_path / "good", "se", "noisy.scp")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "decode.json").write_text(
        json.dumps({"task": "se", "data_dir": str(tiny_corpus / "mini_se_test")})
    )
    result = runner.invoke(
        app, ["score", str(tmp_path / "good"), str(tmp_path / "bad"), "--metrics", "sisdr", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    assert "wav.scp: missing" in result.output


def test_unknown_metric_and_missing_model_dir(tmp_path, scored_gt):
    result = runner.invoke(app, ["score", str(scored_gt), "--metrics", "bleu"])
    assert result.exit_code == 1 and "unknown metric(s) bleu" in result.output
    from metis_cli.errors import MetisError
    from metis_cli.score.models import load_asr

    with pytest.raises(MetisError, match="no-such-dir.*never downloaded"):
        load_asr(str(tmp_path / "no-such-dir"))


def test_results_md(scored_gt, tmp_path):
    out = tmp_path / "RESULTS.md"
    result = runner.invoke(app, ["results", str(scored_gt), "-o", str(out), "--title", "TTS baselines"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# TTS baselines") and "## tts: mini_test" in text
    assert "| decode dir | scored | wer | wer_sub | wer_del | wer_ins | cer | sim | sim_other | dnsmos_sig" in text
    assert "- decode `" in text
    assert "score: `" in text and "## Environment" in text and "git revision:" in text and "torch:" in text
    assert "## Recipe stages" not in text


def test_results_md_names_paths_below_the_working_dir_relatively(scored_gt, tmp_path, monkeypatch):
    import shutil

    decode = tmp_path / "exp" / "tts_gt"
    shutil.copytree(scored_gt, decode)
    info = json.loads((decode / "decode.json").read_text())
    (decode / "decode.json").write_text(json.dumps({**info, "command": f"metis decode {tmp_path}/data --out {decode}"}))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "RESULTS.md"
    assert runner.invoke(app, ["results", str(decode), "-o", str(out)]).exit_code == 0
    text = out.read_text()
    assert ": `metis decode data --out exp/tts_gt`" in text and f"{tmp_path}/" not in text


def test_results_md_with_recipe_stage_times(scored_gt, tmp_path):
    times = tmp_path / "stage_times.tsv"
    times.write_text(
        "5\tfinetune\t300\t2026-11-26 10:00:00\tbash egs/tts/run.sh --stage 5\n"
        "5\tfinetune\t301\t2026-11-26 10:09:00\tbash egs/tts/run.sh --stage 5\n"
        "7\tscore\t90\t2026-11-26 10:12:00\tbash egs/tts/run.sh --stage 7\n"
    )
    out = tmp_path / "RESULTS.md"
    result = runner.invoke(app, ["results", str(scored_gt), "-o", str(out), "--stage-times", str(times)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| 5 | finetune | 10.0 | 2 | 2026-11-26 10:09:00 |" in text and "| 7 | score | 1.5 | 1 |" in text
    assert "| | total | 11.5 | | |" in text
    assert text.count("- `bash egs/tts/run.sh --stage 5`") == 1 and "- `bash egs/tts/run.sh --stage 7`" in text
    times.write_text("5 finetune 300\n")
    result = runner.invoke(app, ["results", str(scored_gt), "-o", str(out), "--stage-times", str(times)])
    assert result.exit_code == 1 and "stage_times.tsv: line 1: expected" in result.output


def test_report_html(scored_gt):
    page = scored_gt / "scores" / "report.html"
    html = page.read_text()
    assert html.count("<audio") == 3 * 3 and "report/distributions.png" in html
    # the ASR hypotheses aligned to the references: every word error of the utterances shown marked
    import re

    shown = re.findall(r"<h3>(.*?)</h3>", html)
    assert shown and html.count("<p>ASR: ") == len(shown)
    marked = {kind: html.count(f"<span class='{kind}'") for kind in ("sub", "del", "ins")}
    rows = read_per_utt(scored_gt / "scores" / "per_utt.tsv")
    columns = {"sub": "word_subs", "del": "word_dels", "ins": "word_ins"}
    assert marked == {k: sum(int(rows[u][c]) for u in shown) for k, c in columns.items()}

    for src in re.findall(r'src="([^"]+)"', html):
        assert (page.parent / src).resolve().is_file(), src


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (bash tools/install.sh --test true)"
)
def test_report_renders_in_headless_chromium(scored_gt, tmp_path):
    shot = tmp_path / "report.png"
    cmd = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        (scored_gt / "scores" / "report.html").as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120)
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert image.shape == (1600, 1280)
    assert image.std() > 20, "the page is blank"
    assert (image < 100).mean() > 0.02, "spectrograms (dark images) are visible"


def test_transformers_models_from_local_dirs(tiny_corpus, tmp_path):
    """Whisper/CTC ASR and WavLM speaker models load from a local dir; tiny random ones here."""
    import json as _json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
        WavLMConfig,
        WavLMForXVector,
    )

    torch.manual_seed(0)
    small = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    features = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    ctc_dir, sv_dir = tmp_path / "ctc", tmp_path / "sv"
    ctc_dir.mkdir()
    vocab = {"<pad>": 0, "|": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (ctc_dir / "vocab.json").write_text(_json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(ctc_dir / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=0, **small)).save_pretrained(ctc_dir)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(ctc_dir)
    WavLMForXVector(
        WavLMConfig(
            tdnn_dim=(32, 32, 64), tdnn_kernel=(5, 3, 1), tdnn_dilation=(1, 2, 1), xvector_output_dim=16, **small
        )
    ).save_pretrained(sv_dir)
    features.save_pretrained(sv_dir)

    path = tmp_path / "dec"
    link_decode_dir(tiny_corpus / "mini_test", path, "tts")
    summary = score_decode_dir(path, Scorers(asr=str(ctc_dir), sim=str(sv_dir)), metrics=["wer", "sim"])
    assert summary["counts"]["scored"] == 6 and summary["scorers"]["asr"] == str(ctc_dir)
    assert -1.0 <= summary["metrics"]["sim"]["mean"] <= 1.0 and summary["metrics"]["wer"]["n"] == 6
    # the cache is keyed on the scorer: the default models recompute what the tiny ones made, and back again
    random_wer = summary["metrics"]["wer"]["mean"]
    default = score_decode_dir(path, Scorers(), metrics=["wer"])
    assert default["metrics"]["wer"]["mean"] < 60 < random_wer, (
        "pocketsphinx's WER, not the random CTC model's relabelled"
    )
    assert default["scorers"]["per_metric"]["wer"] == "asr:pocketsphinx"
    assert default["scorers"]["per_metric"]["sim"] == f"sim:{sv_dir}", "SIM, not asked for now, keeps its maker"
    again = score_decode_dir(path, Scorers(asr=str(ctc_dir), sim=str(sv_dir)), metrics=["wer"])
    assert again["metrics"]["wer"]["mean"] == pytest.approx(random_wer)
    (ctc_dir / "config.json").write_text("{broken")
    from metis_cli.errors import MetisError
    from metis_cli.score.models import load_asr
    from metis_cli.score.scoring import check_scorers

    load_asr.cache_clear()
    with pytest.raises(MetisError, match=rf"ASR model '{ctc_dir}' cannot be loaded"):
        check_scorers(Scorers(asr=str(ctc_dir)), ["wer"])
    check_scorers(Scorers(asr=str(ctc_dir)), ["stoi"])  # not needed: not loaded
    result = runner.invoke(app, ["score", str(path), "--asr", str(tmp_path / "nothing-here")])
    assert result.exit_code == 1 and "never downloaded" in result.output and "Traceback" not in result.output


def test_the_comparison_keeps_every_decode_dir_and_metric_in_a_100_column_terminal(monkeypatch):
    from metis_cli.cli.score import _print_comparison
    from metis_cli.log import console

    monkeypatch.setattr(console, "width", 100)
    names = [
        "wer",
        "cer",
        "sim",
        "sim_other",
        "dnsmos_sig",
        "dnsmos_bak",
        "dnsmos_ovrl",
        "dnsmos_p808",
        "pesq_wb",
        "stoi",
        "sisdr",
    ]
    summary = {
        "decode_dir": "egs/tts/exp/tts_mini/decode_mini_test",
        "task": "tts",
        "failures": [],
        "counts": {"scored": 100, "references": 100, "failed": 0},
        "metrics": {n: {"mean": 1.234, "ci95": 0.05} for n in names},
    }
    with console.capture() as captured:
        _print_comparison([summary])
    text = captured.get()
    assert text.count("egs/tts/exp/tts_mini/decode_mini_test") >= 2 and "…" not in text
    assert max(map(len, text.splitlines())) <= 100
    for short in ("wer", "sim_other", "sig", "p808", "pesq_wb", "stoi", "sisdr"):
        assert f" {short} " in text
