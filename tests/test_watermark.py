"""The watermark: embed/detect on real speech of the tiny corpus, robustness basics, payload, bad input,
metis detect, and the decoders marking their outputs by default."""

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from metis_cli.audio import resample
from metis_cli.cli import app
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.watermark import (
    DEFAULT_KEY,
    KEY_ENV,
    WatermarkConfig,
    detect,
    embed,
    key_id,
    marker_for,
    payload_for,
    resolve_key,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def speech(tiny_corpus):
    """Three seconds or more of speech: two test utterances joined."""
    dd = DataDir(tiny_corpus / "mini_test")
    wavs = [dd.load_audio(u, 16000)[0] for u in dd.utt_ids()[:2]]
    return np.concatenate(wavs)


def test_marked_speech_is_detected_with_its_payload_and_unmarked_is_not(speech):
    payload = payload_for("tts_mini")
    assert payload >> 8 == 0x4D
    marked = embed(speech, 16000, payload)
    assert marked.dtype == np.float32 and marked.shape == speech.shape
    snr = 10 * np.log10((speech**2).sum() / ((speech - marked) ** 2).sum())
    assert 16 < snr < 28  # a ±2.2 dB ripple
    found = detect(marked[:48000], 16000)
    assert found.detected and found.p_value < 1e-6 and found.payload == payload and found.verdict == "yes"
    clean = detect(speech[:48000], 16000)
    assert clean.detected is False and clean.p_value > 1e-3
    wrong = detect(marked[:48000], 16000, WatermarkConfig(key="someone else's key"))
    assert wrong.detected is False


def test_detection_survives_gain_shift_resampling_and_concatenation(speech):
    marked = embed(speech, 16000, 7)
    clip = marked[1600 : 1600 + 48000]  # a 100 ms shift
    assert detect(0.5 * clip, 16000).detected  # -6 dB
    narrow = resample(resample(clip, 16000, 8000), 8000, 16000)
    found = detect(narrow, 16000)
    assert found.detected and found.payload is not None  # the payload band is gone but the verdict holds
    assert detect(np.concatenate([speech[:24000], clip, speech[-24000:]]), 16000).detected
    high = embed(resample(speech, 16000, 24000), 24000, 7)  # a 24 kHz decoder's output, checked at 24 kHz
    assert detect(high[: 3 * 24000], 24000).payload == 7


def test_silence_and_too_short_audio_get_no_verdict(speech):
    assert not np.any(embed(np.zeros(16000, np.float32), 16000))
    short = detect(embed(speech, 16000)[:8000], 16000)
    assert short.detected is None and short.verdict == "no verdict" and "a verdict needs 0.75 s" in short.reason


def test_bad_input_to_embed():
    with pytest.raises(MetisError, match="too low"):
        embed(np.zeros(8000, np.float32), 8000)
    with pytest.raises(MetisError, match="expected mono"):
        embed(np.zeros((100, 2), np.float32), 16000)
    with pytest.raises(MetisError, match="does not fit in 16 bits"):
        embed(np.zeros(100, np.float32), 16000, payload=1 << 16)


def test_key_resolution_and_marker(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert resolve_key() == DEFAULT_KEY and resolve_key("k") == "k"
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert resolve_key() == "from-env"
    marker = marker_for("se_mini")
    assert (
        marker.config.key == "from-env"
        and marker.info["key"] == key_id("from-env")
        and "from-env" not in json.dumps(marker.info)
    )
    assert marker.info["payload"] == f"{payload_for('se_mini'):04x}" and key_id(DEFAULT_KEY) == "default"
    assert marker_for("se_mini", enabled=False) is None


def test_metis_detect_table_tsv_and_errors(speech, tmp_path):
    sf.write(tmp_path / "marked.wav", embed(speech, 16000, payload_for("vc_mini")), 16000)
    sf.write(tmp_path / "plain.wav", speech, 16000)
    sf.write(tmp_path / "short.wav", speech[:4000], 16000)
    (tmp_path / "wav.scp").write_text(f"a {tmp_path / 'marked.wav'}\nb {tmp_path / 'plain.wav'}\n")
    out = tmp_path / "detect.tsv"
    result = runner.invoke(
        app, ["detect", str(tmp_path / "short.wav"), "--scp", str(tmp_path / "wav.scp"), "--tsv", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[0]: line.split("\t") for line in out.read_text().splitlines()[1:]}
    assert rows["a"][4] == "yes" and rows["a"][5] == f"{payload_for('vc_mini'):04x}"
    assert rows["b"][4] == "no" and rows["b"][5] == "" and rows[str(tmp_path / "short.wav")][4] == "no verdict"
    result = runner.invoke(app, ["detect", str(tmp_path / "marked.wav"), "--key", "wrong", "--tsv", str(out)])
    assert result.exit_code == 0 and out.read_text().splitlines()[1].split("\t")[4] == "no"
    result = runner.invoke(app, ["detect", str(tmp_path / "missing.wav")])
    assert (
        result.exit_code == 1
        and "could not be read" in result.output
        and "missing.wav: audio file not found" in result.output
    )
    result = runner.invoke(app, ["detect"])
    assert result.exit_code == 1 and "nothing to check" in result.output
