import numpy as np
import pytest
import soundfile as sf
from conftest import tone, write_wav

from metis_cli.audio import audio_info, load_audio, resample, save_audio
from metis_cli.errors import AudioError


def dominant_frequency(wav, sample_rate):
    spectrum = np.abs(np.fft.rfft(wav))
    return np.fft.rfftfreq(len(wav), 1 / sample_rate)[np.argmax(spectrum)]


def test_mono_16k_round_trip(tmp_path):
    path = save_audio(tmp_path / "a.wav", tone(300, 0.5), 16000)
    wav, sr = load_audio(path)
    assert sr == 16000 and wav.shape == (8000,) and wav.dtype == np.float32
    np.testing.assert_allclose(wav, tone(300, 0.5), atol=1 / 32768 + 1e-6)


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    path = write_wav(tmp_path / "stereo.wav", channels=2)
    wav, _ = load_audio(path)
    left_right, _ = load_audio(path, mono=False)
    assert wav.ndim == 1 and left_right.shape == (16000, 2)
    np.testing.assert_allclose(wav, left_right.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("file_sr", [8000, 48000])
def test_resampling_keeps_duration_and_pitch(tmp_path, file_sr):
    path = write_wav(tmp_path / f"{file_sr}.wav", freq=440, seconds=1.0, sample_rate=file_sr)
    wav, sr = load_audio(path, 16000)
    assert sr == 16000 and abs(len(wav) - 16000) <= 1
    assert abs(dominant_frequency(wav, sr) - 440) < 2


def test_resample_identity_returns_input():
    x = tone(seconds=0.1)
    assert resample(x, 16000, 16000) is x


def test_segment_cut(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=2.0)
    wav, _ = load_audio(path, start=0.5, end=1.25)
    assert len(wav) == 12000


def test_flac_write_and_info(tmp_path):
    path = save_audio(tmp_path / "a.flac", tone(seconds=0.25, sample_rate=24000), 24000)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (24000, 1, 6000)
    assert info.duration == pytest.approx(0.25)


def test_pipe_source(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=0.5)
    wav, sr = load_audio(f"cat {path} |", commands=True)
    assert sr == 16000 and len(wav) == 8000
    assert audio_info(f"cat {path} |", commands=True).frames == 8000


def test_a_path_is_never_a_command_unless_it_comes_from_an_scp(tmp_path):
    flag = tmp_path / "ran"
    for read in (lambda s: load_audio(s), lambda s: audio_info(s, utt_id="u1")):
        with pytest.raises(
            AudioError, match=r"a path ending in '\|' is a shell command, which only wav.scp entries may be"
        ):
            read(f"touch {flag} |")
    assert not flag.exists()


def test_failing_pipe_names_the_utterance():
    with pytest.raises(AudioError, match=r"utterance 'u1'.*exit code 3"):
        load_audio("exit 3 |", utt_id="u1", commands=True)


def test_a_truncated_file_is_refused(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=1.0)
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    for read in (load_audio, audio_info):  # the header still promises the whole second
        with pytest.raises(
            AudioError, match=r"cut\.wav: truncated: the header promises 16000 samples, the file holds 79\d\d; copy"
        ):
            read(cut)
    assert (
        len(load_audio(f"cat {cut} |", commands=True)[0]) < 8000
    )  # a pipe's stream may not know its length: read as is


def test_missing_file_names_file_and_utterance(tmp_path):
    with pytest.raises(AudioError, match=r"utterance 'u7' \(.*nope\.wav\): audio file not found"):
        load_audio(tmp_path / "nope.wav", utt_id="u7")


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav.*audio is empty"):
        load_audio(path)


def test_truncated_header(tmp_path):
    good = write_wav(tmp_path / "good.wav")
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(good.read_bytes()[:20])
    with pytest.raises(AudioError, match="truncated.wav"):
        load_audio(bad)
    with pytest.raises(AudioError, match="truncated.wav: cannot read audio header"):
        audio_info(bad)


def test_non_audio_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match="notes.wav: cannot decode audio"):
        load_audio(path)


def test_save_rejects_unknown_format_and_empty(tmp_path):
    with pytest.raises(AudioError, match=r"cannot write '\.mp4'"):
        save_audio(tmp_path / "a.mp4", tone(), 16000)
    with pytest.raises(AudioError, match="empty audio"):
        save_audio(tmp_path / "a.wav", np.zeros(0), 16000)


def test_save_clips_instead_of_wrapping(tmp_path):
    path = save_audio(tmp_path / "loud.wav", np.full(100, 1.7), 16000)
    wav, _ = load_audio(path)
    assert wav.max() == pytest.approx(1.0, abs=1e-4)


def test_save_is_atomic_leaves_no_temp_files(tmp_path):
    save_audio(tmp_path / "a.wav", tone(), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


def test_written_files_follow_the_umask(tmp_path):
    import os

    from metis_cli.data.datadir import write_table

    old = os.umask(0o022)
    try:
        audio = save_audio(tmp_path / "a.wav", tone(seconds=0.1), 16000)
        table = write_table(tmp_path / "wav.scp", {"a": str(audio)})
    finally:
        os.umask(old)
    assert (audio.stat().st_mode & 0o777, table.stat().st_mode & 0o777) == (0o644, 0o644)


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno

    import metis_cli.audio as audio
    from metis_cli.data.arrays import ArrayStore, ArrayWriter
    from metis_cli.errors import DataDirError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audio.sf, "write", full)
    with pytest.raises(
        AudioError, match=r"a\.wav: cannot write \(No space left on device\); the disk is full: free space"
    ):
        save_audio(tmp_path / "a.wav", tone(seconds=0.1), 16000)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    with ArrayWriter(tmp_path / "store", "part-1") as writer:
        writer.write("u1", np.arange(10, dtype=np.int16))
        real = writer._bin

        class FillsUp:  # writes a few bytes, then the disk is full
            def write(self, data):
                real.write(data[:3])
                raise OSError(errno.ENOSPC, "No space left on device")

            def __getattr__(self, name):
                return getattr(real, name)

        writer._bin = FillsUp()
        with pytest.raises(
            DataDirError, match=r"part-1\.bin: cannot write \(No space left on device\).*\(utterance 'u2'\)"
        ):
            writer.write("u2", np.arange(10, dtype=np.int16))
        writer._bin = real
    assert (tmp_path / "store" / "part-1.bin").stat().st_size == 20, "the partial array is cut off"
    with ArrayWriter(tmp_path / "store", "part-1") as writer:  # the rerun resumes after u1
        assert "u1" in writer and "u2" not in writer
        writer.write("u2", np.arange(5, dtype=np.int16))
    store = ArrayStore(tmp_path / "store")
    assert store["u1"].tolist() == list(range(10)) and store["u2"].tolist() == list(range(5))
