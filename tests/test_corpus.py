"""The embedded corpus at its tiny size: speakers, splits, durations, timings, task sets, determinism."""

import json

import numpy as np
import pytest

from metis_cli.audio import load_audio
from metis_cli.corpus import mini, noise
from metis_cli.corpus.voices import words_of
from metis_cli.data.datadir import DataDir, read_ctm
from metis_cli.data.validate import validate_datadir
from metis_cli.errors import CorpusError

SPLITS = ("mini_train", "mini_dev", "mini_test")
TASK_SETS = tuple(f"mini_{task}_{part}" for task in ("se", "tse", "vc") for part in ("dev", "test"))


def test_every_set_is_a_valid_data_dir(tiny_corpus):
    for name in SPLITS + TASK_SETS:
        report = validate_datadir(tiny_corpus / name)
        assert report.ok, (name, [str(e) for e in report.errors])
        assert report.sample_rates == {16000: report.num_utts}


def test_speakers_and_splits(tiny_corpus):
    spec = mini.SIZES["tiny"]
    train, dev, test = (DataDir(tiny_corpus / n) for n in SPLITS)
    assert train.speakers() == sorted(spec.seen_speakers) == dev.speakers()
    assert test.speakers() == sorted(spec.test_speakers)
    assert len(train.utt_ids()) == 4 * 3 and len(dev.utt_ids()) == 4 and len(test.utt_ids()) == 2 * 3
    # Zero-shot: test speakers and test sentences never occur in training.
    assert not set(test.speakers()) & set(train.speakers())
    assert not set(test.read("text").values()) & set(train.read("text").values())


def test_default_size_meets_the_corpus_spec():
    spec = mini.SIZES["default"]
    planned = mini.plan_splits(spec, seed=0)
    speakers = {u.speaker for utts in planned.values() for u in utts}
    assert len(speakers) == 16 and len(mini.load_sentences()) == 260
    assert sum(len(u) for u in planned.values()) >= 800


def test_large_size_adds_training_speech_only():
    default, large = (mini.plan_splits(mini.SIZES[name], seed=0) for name in ("default", "large"))
    # Same dev and test sets (results stay comparable), and the default's training set inside the large one.
    assert large["mini_dev"] == default["mini_dev"] and large["mini_test"] == default["mini_test"]
    train = {u.utt_id: u for u in large["mini_train"]}
    assert set(u.utt_id for u in default["mini_train"]) <= set(train)
    assert len(train) == 660 + 36 * 120
    speakers = {u.speaker for u in train.values()}
    assert len(speakers) == 36 and not speakers & set(mini.SIZES["large"].test_speakers)
    assert all(s in mini.SPEAKERS for s in speakers)
    # Template sentences: many distinct ones, none of them a dev or test sentence.
    texts = {u.text for u in train.values()}
    assert len(texts) > 2000
    held_out = {u.text for split in ("mini_dev", "mini_test") for u in large[split]}
    assert not {u.text for u in train.values() if u.sentence_id.startswith("t")} & held_out


def test_template_sentences():
    from metis_cli.corpus.templates import plural, template_sentences

    first = template_sentences(200, mini.rng_for(0, "templates"))
    assert len(set(first.values())) == 200 and list(first)[:2] == ["t00001", "t00002"]
    assert list(template_sentences(50, mini.rng_for(0, "templates")).items()) == list(first.items())[:50]
    assert template_sentences(50, mini.rng_for(1, "templates")) != template_sentences(50, mini.rng_for(0, "templates"))
    for text in first.values():
        assert text[0].isupper() and text[-1] in ".?" and 5 <= len(text.split()) <= 16, text
        assert " a a" not in text and " a e" not in text and "A o" not in text, text
    assert [plural(w) for w in ("box", "lady", "key", "knife", "cup")] == ["boxes", "ladies", "keys", "knives", "cups"]


def test_durations_and_timings(tiny_corpus):
    dd = DataDir(tiny_corpus / "mini_train")
    durations = {u: float(d) for u, d in dd.read("utt2dur").items()}
    assert all(mini.MIN_DURATION <= d <= mini.MAX_DURATION for d in durations.values())
    for u in dd.utt_ids():
        wav, sr = dd.load_audio(u)
        assert len(wav) / sr == pytest.approx(durations[u], abs=1e-3)
        assert 0.01 < np.sqrt(np.mean(wav**2)) < 0.2 and np.abs(wav).max() <= 0.95 + 1e-4
    phones, words, text = read_ctm(dd.file("phones.ctm")), read_ctm(dd.file("words.ctm")), dd.read("text")
    assert set(phones) == set(durations)
    for u, items in phones.items():
        assert items[0].start == 0.0 and items[-1].end <= durations[u] + 1e-3
        assert all(a.end == pytest.approx(b.start, abs=2e-3) for a, b in zip(items, items[1:], strict=False))
    matching = sum([t.token for t in words[u]] == words_of(text[u]) for u in words)
    assert matching >= 0.9 * len(text), "word timings should cover the transcript's words in order"


def test_speakers_sound_different(tiny_corpus):
    """Perturbed speakers are not copies: mean spectra of two speakers of one base voice differ."""
    dd = DataDir(tiny_corpus / "mini_test")
    spectra = {}
    for spk in dd.speakers():
        utt = next(u for u in dd.utt_ids() if u.startswith(spk))
        wav, _ = dd.load_audio(utt)
        frames = np.lib.stride_tricks.sliding_window_view(wav, 512)[::256]
        spectra[spk] = np.log(np.abs(np.fft.rfft(frames * np.hanning(512))).mean(axis=0) + 1e-6)
    a, b = spectra.values()
    assert np.mean(np.abs(a - b)) > 0.3


def _gain_and_residual(mixed, clean):
    gain = float(np.dot(mixed, clean) / np.dot(clean, clean))
    return gain, mixed / gain - clean


def test_prompts_are_other_utterances_of_the_same_speaker(tiny_corpus):
    for name in ("mini_dev", "mini_test"):
        dd = DataDir(tiny_corpus / name)
        prompts, utt2spk = dd.read("utt2prompt"), dd.utt2spk
        assert set(prompts) == set(utt2spk)
        for utt, prompt in prompts.items():
            assert prompt != utt and prompt.split("_")[0] == utt2spk[utt]
            assert dd.read("prompt.scp")[utt].endswith(f"/{prompt}.wav")
    assert not DataDir(tiny_corpus / "mini_train").has("prompt.scp")


def test_se_set_snr_matches_its_label(tiny_corpus):
    dd = DataDir(tiny_corpus / "mini_se_test")
    snr, rt60 = dd.read("utt2snr"), dd.read("utt2rt60")
    assert set(dd.read("utt2noise").values()) <= set(noise.NOISE_TYPES)
    dry = [u for u in dd.utt_ids() if float(rt60[u]) == 0.0]
    assert dry, "the tiny test set should hold at least one utterance without reverb"
    for u in dry:
        clean, _ = dd.load_audio(u)
        noisy, _ = dd.load_audio(u, scp="noisy.scp")
        gain, residual = _gain_and_residual(noisy.astype(np.float64), clean.astype(np.float64))
        measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(residual**2))
        assert measured == pytest.approx(float(snr[u]), abs=1.0)


def test_tse_set_pairs_target_interferer_and_enrollment(tiny_corpus):
    dd = DataDir(tiny_corpus / "mini_tse_test")
    utt2spk = dd.utt2spk
    spk_of = {
        u: u.split("_")[0] for u in list(dd.read("utt2interferer").values()) + list(dd.read("utt2enroll").values())
    }
    for u in dd.utt_ids():
        interferer, enroll = dd.read("utt2interferer")[u], dd.read("utt2enroll")[u]
        assert spk_of[interferer] != utt2spk[u] and spk_of[enroll] == utt2spk[u] and enroll != u
        assert dd.read("prompt_text")[u]  # the enrollment's transcript, for text-guided TSE
        assert -5 <= float(dd.read("utt2sir")[u]) <= 5
        mix, _ = dd.load_audio(u, scp="mix.scp")
        target, _ = dd.load_audio(u)
        assert mix.shape == target.shape


def test_vc_set_is_parallel(tiny_corpus):
    dd = DataDir(tiny_corpus / "mini_vc_test")
    src_spk, text = dd.read("utt2source_spk"), dd.read("text")
    corpus_text = {}
    for name in SPLITS:
        corpus_text.update(DataDir(tiny_corpus / name).read("text"))
    for u, target_spk in dd.utt2spk.items():
        assert src_spk[u] != target_spk and u.startswith(target_spk) and u.endswith(f"_from_{src_spk[u]}")
        src_utt = dd.read("src.scp")[u].rsplit("/", 1)[-1].removesuffix(".wav")
        ref_utt = dd.read("ref.scp")[u].rsplit("/", 1)[-1].removesuffix(".wav")
        assert src_utt.startswith(src_spk[u]) and corpus_text[src_utt] == text[u]
        assert ref_utt.startswith(target_spk) and ref_utt != u.split("_from_")[0]


def test_plans_are_deterministic_per_seed():
    spec = mini.SIZES["tiny"]
    assert mini.plan_splits(spec, 0) == mini.plan_splits(spec, 0)
    assert mini.plan_splits(spec, 0) != mini.plan_splits(spec, 1)


def test_rendering_is_deterministic(tiny_corpus, tmp_path):
    dd = DataDir(tiny_corpus / "mini_test")
    utt = dd.utt_ids()[0]
    spk, sid = utt.split("_")
    again = mini.render_utterance(mini.Utterance(utt, spk, sid, dd.read("text")[utt]), tmp_path / f"{utt}.wav")
    original = json.loads((tiny_corpus / "wav" / spk / f"{utt}.json").read_text())
    assert again["phones"] == original["phones"] and again["duration"] == original["duration"]
    np.testing.assert_array_equal(dd.load_audio(utt)[0], load_audio(tmp_path / f"{utt}.wav")[0])


def test_task_sets_are_deterministic(tiny_corpus, tmp_path):
    src = DataDir(tiny_corpus / "mini_test")
    copy = mini.write_se_set(tmp_path / "mini_se_test", src, tmp_path / "wav", seed=0)
    original = DataDir(tiny_corpus / "mini_se_test")
    assert copy.read("utt2snr") == original.read("utt2snr") and copy.read("utt2noise") == original.read("utt2noise")
    u = copy.utt_ids()[0]
    np.testing.assert_array_equal(copy.load_audio(u, scp="noisy.scp")[0], original.load_audio(u, scp="noisy.scp")[0])


def test_rerun_reuses_everything(tiny_corpus):
    wav = next((tiny_corpus / "wav").glob("spk*/*.wav"))
    stamp = wav.stat().st_mtime_ns
    result = mini.make_mini_corpus(tiny_corpus, size="tiny", seed=0, num_jobs=1)
    assert wav.stat().st_mtime_ns == stamp
    assert result["mini_train"]["utterances"] == 12 and result["mini_test"]["speakers"] == 2


def test_a_killed_run_resumes_with_what_is_missing(tiny_corpus):
    wav = sorted((tiny_corpus / "wav" / "spk13").glob("*.wav"))[0]
    before = load_audio(wav)[0]
    wav.unlink()
    (tiny_corpus / "mini_se_test" / ".done").unlink()
    mini.make_mini_corpus(tiny_corpus, size="tiny", seed=0, num_jobs=1)
    np.testing.assert_array_equal(load_audio(wav)[0], before)
    assert (tiny_corpus / "mini_se_test" / ".done").is_file()
    assert validate_datadir(tiny_corpus / "mini_se_test").ok


def test_make_mini_command_reports_every_set(tiny_corpus):
    from typer.testing import CliRunner

    from metis_cli.cli import app

    result = CliRunner().invoke(app, ["data", "make-mini", str(tiny_corpus), "--size", "tiny", "--nj", "1"])
    assert result.exit_code == 0, result.output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.output.splitlines() if "/mini_" in line]
    rows = {c[0]: c[1:3] for c in cells}
    assert len(rows) == 9 and rows[str(tiny_corpus / "mini_train")] == ["12", "4"]


def test_other_settings_in_the_same_dir_are_refused(tiny_corpus):
    with pytest.raises(CorpusError, match=r"holds a corpus built with .*\"seed\": 0.*asked for .*\"seed\": 5"):
        mini.make_mini_corpus(tiny_corpus, size="tiny", seed=5)


def test_missing_engine_names_the_debian_package(monkeypatch, tmp_path):
    from metis_cli.corpus import voices

    real_which = voices.shutil.which
    monkeypatch.setattr(voices.shutil, "which", lambda cmd: None if cmd == "festival" else real_which(cmd))
    with pytest.raises(
        CorpusError,
        match=r"(?s)festival \(voices festival_kal, festival_ked, festival_slt_hts\): Debian package "
        r"'festival'.*tools/install.sh",
    ):
        mini.make_mini_corpus(tmp_path / "mini", size="tiny")
    assert not (tmp_path / "mini").exists(), "nothing is written before the engines are known to work"
