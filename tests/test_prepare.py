"""metis data prepare: each corpus layout a user brings, as a tiny fake directory tree."""

import numpy as np
import pytest
import soundfile as sf

from metis_cli.corpus.prepare import PrepareOptions, extract_audio, prepare_corpus
from metis_cli.data.datadir import DataDir
from metis_cli.data.validate import validate_datadir
from metis_cli.errors import DataDirError


def tone(path, seconds=1.0, sr=16000, freq=220.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), sr)
    return path


def valid(dd: DataDir):
    report = validate_datadir(dd.path)
    assert report.ok, [str(e) for e in report.errors]
    return dd


def librispeech_tree(root, parts=("train-clean-100", "dev-clean", "test-clean")):
    for p, part in enumerate(parts):
        for spk in (f"{p}1", f"{p}2"):
            chapter = root / part / spk / "100"
            lines = []
            for n in range(3):
                utt = f"{spk}-100-{n:04d}"
                tone(chapter / f"{utt}.flac", 0.5 + 0.1 * n)
                lines.append(f"{utt} HELLO WORLD NUMBER {n}")
            (chapter / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech_sets_texts_and_prompts(tmp_path):
    sets = prepare_corpus("librispeech", librispeech_tree(tmp_path / "LibriSpeech"), tmp_path / "data")
    assert sorted(sets) == ["dev", "test", "train"]
    train, test = valid(sets["train"]), valid(sets["test"])
    assert train.utt_ids()[0] == "01-100-0000" and train.speakers() == ["01", "02"]
    assert train.read("text")["01-100-0002"] == "hello world number 2"
    assert float(train.read("utt2dur")["01-100-0002"]) == pytest.approx(0.7)
    prompts = test.read("utt2prompt")
    assert all(p != u and test.utt2spk[p] == test.utt2spk[u] for u, p in prompts.items())
    assert test.read("prompt_text")["21-100-0000"] == test.read("text")[prompts["21-100-0000"]]
    assert test.read("prompt.scp")["21-100-0000"].endswith(f"{prompts['21-100-0000']}.flac")


def test_libritts_and_a_missing_part(tmp_path):
    root = tmp_path / "LibriTTS"
    for chapter, part in enumerate(("train-clean-100", "train-clean-360", "dev-clean", "test-clean"), start=10):
        for n in range(2):
            audio = tone(
                root / part / f"{part[:3]}7" / str(chapter) / f"{part[:3]}7_{chapter}_000001_00000{n}.wav",
                0.6,
                sr=24000,
            )
            audio.with_suffix(".normalized.txt").write_text(f"Hello, {part} number {n}.\n")
    sets = prepare_corpus("libritts", root, tmp_path / "data")
    assert len(valid(sets["train"]).utt_ids()) == 4 and sets["train"].speakers() == ["tra7"]
    assert sets["test"].read("text")["tes7_13_000001_000000"] == "Hello, test-clean number 0."
    with pytest.raises(DataDirError, match="part 'dev-other' not found"):
        prepare_corpus("libritts", root, tmp_path / "other", PrepareOptions(dev_part="dev-other"))


def test_vctk_pairs_share_a_text_and_the_reference_is_the_target_speaker(tmp_path):
    root = tmp_path / "VCTK"
    texts = {1: "Please call Stella.", 2: "Ask her to bring these things.", 3: "Six spoons of fresh snow peas."}
    for s, spk in enumerate(("p225", "p226", "p227", "p228", "p229")):
        for n, text in texts.items():
            if spk == "p229" and n == 3:
                continue
            tone(root / "wav48_silence_trimmed" / spk / f"{spk}_{n:03d}_mic1.flac", 0.5, freq=200 + 20 * s)
            (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (root / "txt" / spk / f"{spk}_{n:03d}.txt").write_text(text + "\n")
    sets = prepare_corpus("vctk", root, tmp_path / "data", PrepareOptions(test_speakers=2))
    test = valid(sets["test"])
    assert set(test.speakers()) == {"p228", "p229"} and set(valid(sets["train"]).speakers()) == {"p225", "p226", "p227"}
    # p228_003 has no counterpart in p229 (its audio is missing): no ground truth, no pair.
    assert test.utt_ids() == ["p228_001_from_p229", "p228_002_from_p229", "p229_001_from_p228", "p229_002_from_p228"]
    src, ref, wav = test.read("src.scp"), test.read("ref.scp"), test.read("wav.scp")
    assert src["p228_001_from_p229"].endswith("p229/p229_001_mic1.flac") and wav["p228_001_from_p229"].endswith(
        "p228_001_mic1.flac"
    )
    assert "/p228/" in ref["p228_001_from_p229"] and not ref["p228_001_from_p229"].endswith("p228_001_mic1.flac")
    assert test.read("utt2source_spk")["p228_001_from_p229"] == "p229"


def test_dns_pairs_noisy_and_clean_by_fileid(tmp_path):
    root = tmp_path / "DNS"
    for r in (6709, 1234):
        for c in range(3):
            tone(root / "datasets" / "clean" / "read_speech" / f"book_00001_chp_0009_reader_{r:05d}_{c}.wav", 0.5)
    test_dir = root / "test_set" / "synthetic" / "no_reverb"
    for n in (0, 7):
        tone(test_dir / "clean" / f"clean_fileid_{n}.wav", 0.6)
        tone(test_dir / "noisy" / f"book_x_snr10_tl-25_fileid_{n}.wav", 0.6, freq=330)
    sets = prepare_corpus("dns", root, tmp_path / "data")
    assert valid(sets["train"]).speakers() == ["reader01234", "reader06709"] and len(sets["dev"].utt_ids()) == 2
    test = valid(sets["test"])
    assert test.utt_ids() == ["fileid_00000", "fileid_00007"] and not test.has("text")
    assert test.read("noisy.scp")["fileid_00007"].endswith("snr10_tl-25_fileid_7.wav")
    (test_dir / "clean" / "clean_fileid_7.wav").unlink()
    with pytest.raises(DataDirError, match="fileid_7.wav: no clean file"):
        prepare_corpus("dns", root, tmp_path / "again")


def test_libri2mix_targets_enrollment_and_transcripts(tmp_path):
    root = tmp_path / "Libri2Mix"
    libri = tmp_path / "LibriSpeech"
    mixes = {
        "train-100": [("19-1-0001", "26-2-0001"), ("19-1-0002", "26-2-0002")],
        "dev": [("84-1-0001", "174-2-0001"), ("84-1-0002", "174-2-0002")],
        "test": [("61-1-0001", "121-2-0001"), ("61-1-0002", "121-2-0002"), ("121-2-0003", "61-1-0003")],
    }
    for part, pairs in mixes.items():
        for a, b in pairs:
            for sub in ("mix_clean", "s1", "s2"):
                tone(root / "wav16k" / "min" / part / sub / f"{a}_{b}.wav", 0.5)
            for utt in (a, b):
                spk, chapter, _ = utt.split("-")
                trans = libri / "test-clean" / spk / chapter / f"{spk}-{chapter}.trans.txt"
                trans.parent.mkdir(parents=True, exist_ok=True)
                with trans.open("a") as f:
                    f.write(f"{utt} WORDS OF {utt}\n")
    sets = prepare_corpus("libri2mix", root, tmp_path / "data", PrepareOptions(transcripts=libri))
    assert sorted(valid(sets["train"]).speakers()) == ["19", "26"] and len(sets["train"].utt_ids()) == 4
    test = valid(sets["test"])
    assert len(test.utt_ids()) == 6 and test.utt2spk["121-2-0003_61-1-0003"] == "121"
    assert test.read("wav.scp")["121-2-0003_61-1-0003"].endswith("/s1/121-2-0003_61-1-0003.wav")
    assert test.read("interferer.scp")["61-1-0003_121-2-0003"].endswith("/s1/121-2-0003_61-1-0003.wav")
    enroll = test.read("utt2enroll")
    assert all(e != u.split("_")[0] and e.split("-")[0] == test.utt2spk[u] for u, e in enroll.items())
    assert test.read("text")["61-1-0001_121-2-0001"] == "words of 61-1-0001"
    assert all(test.read("prompt_text")[u] == f"words of {e}" for u, e in enroll.items())  # the enrollment's words


def write_mp4(path, seconds=1.0, with_audio=True):
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width = video.height = 88
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=16000) if with_audio else None
        for i in range(int(25 * seconds)):
            frame = av.VideoFrame.from_ndarray(np.full((88, 88, 3), (i * 9) % 255, np.uint8), format="rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(16000 * seconds)) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
                frame.sample_rate = 16000
                out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    return path


def test_lrs3_extracts_audio_and_lists_videos(tmp_path):
    root = tmp_path / "LRS3"
    for part, speakers in (("trainval", ("aBc-1", "xY_2")), ("test", ("0Fi83BHQsMA",))):
        for spk in speakers:
            for clip in ("00001", "00002"):
                write_mp4(root / part / spk / f"{clip}.mp4")
                (root / part / spk / f"{clip}.txt").write_text(f"Text:  HELLO {clip}\nConf:  4\n")
    sets = prepare_corpus("lrs3", root, tmp_path / "data")
    test = valid(sets["test"])
    assert test.utt_ids() == ["0Fi83BHQsMA_00001", "0Fi83BHQsMA_00002"]
    assert test.read("video.scp")["0Fi83BHQsMA_00001"].endswith("test/0Fi83BHQsMA/00001.mp4")
    assert test.read("text")["0Fi83BHQsMA_00002"] == "hello 00002"
    wav, sr = sf.read(test.read("wav.scp")["0Fi83BHQsMA_00001"])
    assert sr == 16000 and abs(len(wav) / sr - 1.0) < 0.1 and np.abs(wav).max() > 0.1
    assert test.read("utt2prompt") == {
        "0Fi83BHQsMA_00001": "0Fi83BHQsMA_00002",
        "0Fi83BHQsMA_00002": "0Fi83BHQsMA_00001",
    }
    assert sorted(valid(sets["train"]).speakers()) == ["aBc-1", "xY_2"]
    with pytest.raises(DataDirError, match="no audio track"):
        extract_audio(write_mp4(tmp_path / "silent.mp4", with_audio=False), tmp_path / "silent.wav")


def test_unknown_corpus_and_wrong_dir(tmp_path):
    with pytest.raises(DataDirError, match="unknown corpus 'timit'"):
        prepare_corpus("timit", tmp_path, tmp_path / "data")
    with pytest.raises(DataDirError, match="txt/ folder of VCTK not found"):
        prepare_corpus("vctk", tmp_path, tmp_path / "data")
