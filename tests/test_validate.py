import numpy as np
import soundfile as sf

from metis_cli.data.validate import fix_datadir, validate_datadir


def errors_of(path):
    return [str(p) for p in validate_datadir(path).errors]


def test_valid_dir_and_summary(datadir):
    report = validate_datadir(datadir)
    assert report.ok, report.errors
    summary = report.summary()
    assert summary["utterances"] == 4 and summary["speakers"] == 2
    assert summary["min_duration"] == 0.5 and summary["max_duration"] == 0.75
    assert summary["sample_rates"] == {16000: 4} and summary["channels"] == {1: 4}


def test_unsorted_file_is_an_error_and_fix_sorts_it_keeping_a_backup(datadir):
    text = datadir / "text"
    original = text.read_text()
    text.write_text("".join(reversed(original.splitlines(keepends=True))))
    assert any("text: line 2: not sorted" in e for e in errors_of(datadir))
    assert fix_datadir(datadir) == ["text"]
    assert text.read_text() == original
    backups = list((datadir / ".backup").glob("*/text"))
    assert len(backups) == 1 and backups[0].read_text() != original
    assert validate_datadir(datadir).ok
    assert fix_datadir(datadir) == []


def test_duplicates_are_reported_and_not_fixed(datadir):
    with open(datadir / "text", "a") as f:
        f.write("spkB_u1 another transcript\n")
    assert any("duplicate id 'spkB_u1'" in e for e in errors_of(datadir))
    import pytest

    from metis_cli.errors import DataDirError

    before = (datadir / "text").read_text()
    with pytest.raises(DataDirError, match="duplicate id"):
        fix_datadir(datadir)
    assert (datadir / "text").read_text() == before


def test_unknown_and_missing_ids(datadir):
    (datadir / "text").write_text("spkA_u0 hi\nspkA_u1 there\nspkB_u0 you\nzzz_u9 who\n")
    errors = errors_of(datadir)
    assert any("text: 1 unknown utterance id(s) not in the reference file: 'zzz_u9'" in e for e in errors)
    assert any("text: 1 utterance id(s) missing: 'spkB_u1'" in e for e in errors)


def test_extra_scp_may_cover_a_subset_but_not_unknown_ids(datadir):
    (datadir / "noisy.scp").write_text(f"spkA_u0 {datadir.parent / 'wav' / 'spkA_u0.wav'}\n")
    assert validate_datadir(datadir).ok
    (datadir / "noisy.scp").write_text("ghost /x.wav\n")
    assert any("noisy.scp: 1 unknown utterance id(s)" in e for e in errors_of(datadir))


def test_empty_transcript(datadir):
    (datadir / "text").write_text("spkA_u0 hi\nspkA_u1\nspkB_u0 a\nspkB_u1 b\n")
    assert any("text: line 2: id 'spkA_u1' has empty transcript" in e for e in errors_of(datadir))


def test_non_utf8_text(datadir):
    (datadir / "text").write_bytes(b"spkA_u0 caf\xe9\n")
    assert any("text: line 1: not valid UTF-8" in e for e in errors_of(datadir))


def test_spk2utt_mismatch_then_fix(datadir):
    (datadir / "spk2utt").write_text("spkA spkA_u0\nspkB spkB_u0 spkB_u1\n")
    assert any("spk2utt: does not match utt2spk" in e for e in errors_of(datadir))
    assert "spk2utt" in fix_datadir(datadir)
    assert validate_datadir(datadir).ok


def test_utt2spk_must_sort_by_speaker_too(tmp_path):
    from conftest import make_datadir

    dd = make_datadir(tmp_path)
    # Utterance ids not prefixed by speaker: sorted by utterance, the speakers interleave.
    (dd / "utt2spk").write_text("spkA_u0 spkB\nspkA_u1 spkA\nspkB_u0 spkA\nspkB_u1 spkB\n")
    (dd / "spk2utt").write_text("spkA spkA_u1 spkB_u0\nspkB spkA_u0 spkB_u1\n")
    assert any("prefix each utterance id with its speaker id" in e for e in errors_of(dd))


def test_missing_and_corrupt_audio(datadir):
    (datadir.parent / "wav" / "spkA_u1.wav").unlink()
    (datadir.parent / "wav" / "spkB_u0.wav").write_bytes(b"RIFF1234WAVEjunk")
    errors = errors_of(datadir)
    assert any("utterance 'spkA_u1'" in e and "audio file not found" in e for e in errors)
    assert any("utterance 'spkB_u0'" in e and "cannot" in e for e in errors)
    assert validate_datadir(datadir, check_audio=False).ok


def test_mixed_rates_and_stereo_are_warnings(datadir):
    sf.write(datadir.parent / "wav" / "spkA_u0.wav", np.zeros((8000, 2), dtype=np.float32) + 0.1, 8000)
    report = validate_datadir(datadir)
    assert report.ok
    warnings = " ".join(str(w) for w in report.warnings)
    assert "several sample rates" in warnings and "multi-channel" in warnings


def test_missing_required_file_and_missing_dir(tmp_path, datadir):
    (datadir / "wav.scp").unlink()
    assert "wav.scp: required file missing" in errors_of(datadir)
    assert errors_of(tmp_path / "nope") == [f"{tmp_path / 'nope'}: data dir not found"]


def test_ctm_beyond_duration(datadir):
    (datadir / "utt2dur").write_text("spkA_u0 0.500\nspkA_u1 0.750\nspkB_u0 0.500\nspkB_u1 0.750\n")
    (datadir / "phones.ctm").write_text("spkA_u0 1 0.000 0.400 a\nspkA_u0 1 0.400 0.300 b\n")
    assert any("phones.ctm: utterance 'spkA_u0': timings end at 0.70 s" in e for e in errors_of(datadir))
