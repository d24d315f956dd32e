"""Scorers checked on known cases: identical signals, added noise, hand-computed SI-SDR, text."""

import numpy as np
import pytest

from metis_cli.corpus import noise
from metis_cli.data.datadir import DataDir
from metis_cli.score import metrics as M


@pytest.fixture(scope="module")
def speech(tiny_corpus):
    dd = DataDir(tiny_corpus / "mini_test")
    return dd.load_audio(dd.utt_ids()[0])[0].astype(np.float64)


@pytest.fixture(scope="module")
def noisy(speech):
    rng = np.random.default_rng(0)
    return speech + noise.scale_to_snr(speech, rng.standard_normal(len(speech)), 0.0)


def test_normalize_text():
    assert M.normalize_text("Hello, World!  It's a well-known fact.") == "hello world it's a well known fact"
    assert M.normalize_text("'Quoted' words") == "quoted words"


def test_edit_distance_and_error_counts():
    assert M.edit_distance("kitten".split(), "kitten".split()) == 0
    assert M.edit_distance(list("kitten"), list("sitting")) == 3
    counts = M.word_and_char_errors("The cat sat.", "the cat sat on")
    assert counts == {
        "word_errors": 1,
        "ref_words": 3,
        "word_subs": 0,
        "word_dels": 0,
        "word_ins": 1,
        "char_errors": 2,
        "ref_chars": 9,
    }
    # substitutions, deletions and insertions add up to the edit distance; matches are kept where they can be
    counts = M.word_and_char_errors("the cat sat on the mat", "The bat sat on mat, today")
    assert (counts["word_subs"], counts["word_dels"], counts["word_ins"], counts["word_errors"]) == (1, 1, 1, 3)
    assert M.aligned_text("the cat sat on the mat", "the bat sat on mat today") == (
        "the [cat->bat] sat on [-the] mat [+today]"
    )
    assert [op for op, _, _ in M.align([], ["a"])] == ["I"] and [op for op, _, _ in M.align(["a"], [])] == ["D"]
    rng = np.random.default_rng(0)
    for _ in range(200):
        ref, hyp = (list(rng.choice(list("abcd"), size=rng.integers(0, 8))) for _ in range(2))
        ops = M.align(ref, hyp)
        assert sum(op != "=" for op, _, _ in ops) == M.edit_distance(ref, hyp)
        assert [r for _, r, _ in ops if r is not None] == ref and [h for _, _, h in ops if h is not None] == hyp


def test_identical_signals_score_at_the_ceiling(speech):
    pesq = M.pesq_scores(speech, speech)
    assert pesq["pesq_wb"] == pytest.approx(4.64, abs=0.05) and pesq["pesq_nb"] > 4.4
    stoi = M.stoi_scores(speech, speech)
    assert stoi["stoi"] > 0.999 and stoi["estoi"] > 0.999
    assert M.si_sdr(speech, speech) > 80
    assert M.mcd(speech, speech) == pytest.approx(0.0, abs=1e-9)


def test_noise_at_0_db_lowers_every_metric(speech, noisy):
    clean_pesq, noisy_pesq = M.pesq_scores(speech, speech), M.pesq_scores(speech, noisy)
    assert noisy_pesq["pesq_wb"] < 1.5 and noisy_pesq["pesq_nb"] < clean_pesq["pesq_nb"] - 2
    clean_stoi, noisy_stoi = M.stoi_scores(speech, speech), M.stoi_scores(speech, noisy)
    assert noisy_stoi["stoi"] < clean_stoi["stoi"] - 0.1 and noisy_stoi["estoi"] < clean_stoi["estoi"] - 0.2
    assert M.si_sdr(speech, noisy) == pytest.approx(0.0, abs=0.2)
    assert M.mcd(speech, noisy) > 5


def test_mcd_aligns_in_time_as_papers_do(speech):
    """MCD compares the frames dynamic time warping matches: the same speech 50 ms late, or with a pause
    inserted, is nearly identical, where a frame-by-frame distance is not."""
    half = len(speech) // 2
    assert M.mcd(speech, speech[800:]) < 0.5
    assert M.mcd(speech, np.concatenate([speech[:half], np.zeros(800), speech[half:]])) < 1.0
    ref, late = M.mel_cepstrum(speech)[:, 1:], M.mel_cepstrum(speech[800:])[:, 1:]
    n = min(len(ref), len(late))
    assert np.mean(10 / np.log(10) * np.sqrt(2 * ((ref[:n] - late[:n]) ** 2).sum(1))) > 3  # frame by frame
    assert M.mel_cepstrum(speech).shape[1] == 25 and len(M.mel_cepstrum(speech)) == len(speech) // 80 + 1


def test_si_sdr_matches_a_hand_computation():
    rng = np.random.default_rng(1)
    s = rng.standard_normal(16000)
    s -= s.mean()
    e = rng.standard_normal(16000)
    e -= e.mean()
    e -= np.dot(e, s) / np.dot(s, s) * s  # orthogonal to s: all of it is distortion
    estimate = 3.0 * s + e
    expected = 10 * np.log10(np.sum((3.0 * s) ** 2) / np.sum(e**2))
    assert M.si_sdr(s, estimate) == pytest.approx(expected, abs=1e-6)
    assert M.si_sdr(s, 0.1 * estimate) == pytest.approx(expected, abs=1e-6), "scale invariant"


def test_dnsmos_prefers_clean_speech(speech, noisy):
    from metis_cli.score.models import load_dnsmos

    dnsmos = load_dnsmos()
    clean, degraded = dnsmos(speech), dnsmos(np.clip(noisy / np.abs(noisy).max() * 0.9, -1, 1))
    assert set(clean) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}
    assert all(1.0 <= v <= 5.0 for v in clean.values())
    for key in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"):
        assert degraded[key] < clean[key] - 0.3, key


def test_same_speaker_similarity_exceeds_different_speaker(tiny_corpus):
    from metis_cli.score.models import cosine, load_speaker_model

    dd = DataDir(tiny_corpus / "mini_test")
    model = load_speaker_model("resemblyzer")
    emb = {u: model.embed(dd.load_audio(u)[0]) for u in dd.utt_ids()}
    spk = dd.utt2spk
    same = [cosine(emb[a], emb[b]) for a in emb for b in emb if a < b and spk[a] == spk[b]]
    diff = [cosine(emb[a], emb[b]) for a in emb for b in emb if spk[a] != spk[b]]
    assert min(same) > max(diff)


def test_pocketsphinx_reads_the_corpus(tiny_corpus):
    from metis_cli.score.models import load_asr

    dd = DataDir(tiny_corpus / "mini_test")
    asr = load_asr("pocketsphinx")
    hyps = {u: asr.transcribe(dd.load_audio(u)[0]) for u in dd.utt_ids()}
    again = {u: asr.transcribe(dd.load_audio(u)[0]) for u in reversed(dd.utt_ids())}
    assert hyps == again, "a transcript must not depend on what was decoded before it"
    errors = [M.word_and_char_errors(dd.read("text")[u], hyps[u]) for u in dd.utt_ids()]
    wer = sum(e["word_errors"] for e in errors) / sum(e["ref_words"] for e in errors)
    assert wer < 0.35
