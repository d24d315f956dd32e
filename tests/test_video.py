"""Lip-to-speech data: the viseme model, rendered mouth videos of the embedded corpus, video and feature
input, and their bad input."""

import numpy as np
import pytest

from metis_cli.corpus.lips import FPS, SIZE, LipStyle, articulation, n_video_frames, render_mouth, write_video
from metis_cli.data.datadir import DataDir, TimedToken
from metis_cli.data.validate import validate_datadir
from metis_cli.video import VideoError, check_alignment, read_video, read_visual_features


def phones(*items):
    out, t = [], 0.0
    for token, dur in items:
        out.append(TimedToken(t, dur, token))
        t += dur
    return out


def test_visemes_close_the_lips_open_the_jaw_and_look_alike_within_a_class():
    seq = phones(("pau", 0.2), ("p", 0.12), ("aa", 0.3), ("m", 0.12), ("iy", 0.25), ("uw", 0.3), ("pau", 0.2))
    params = articulation(seq, n_video_frames(1.49))
    at = lambda t: params[int(t * FPS)]  # noqa: E731
    assert at(0.26)[0] < 0.1 and at(0.47)[0] > 0.6  # p closed, aa open
    assert at(0.74)[1] > at(1.03)[1] and at(1.03)[2] > 0.8  # iy spread, uw rounded
    same = articulation(phones(("pau", 0.2), ("b", 0.12), ("aa", 0.3)), 10)
    assert np.allclose(same, articulation(phones(("pau", 0.2), ("m", 0.12), ("aa", 0.3)), 10))  # b and m: one viseme
    frames = render_mouth(params, LipStyle.for_speaker("spk01"), seed=0)
    assert frames.shape == (len(params), SIZE, SIZE) and frames.dtype == np.uint8
    centre = frames[:, 30:60, 30:58].mean(axis=(1, 2))
    assert centre[int(0.47 * FPS)] < centre[int(0.26 * FPS)] - 10  # the open mouth shows a dark cavity
    other = render_mouth(params, LipStyle.for_speaker("spk02"), seed=0)
    assert np.abs(other.astype(int) - frames).mean() > 5  # another speaker's face


def test_the_tiny_corpus_has_a_video_per_utterance(tiny_corpus):
    for name in ("mini_train", "mini_dev", "mini_test"):
        dd = DataDir(tiny_corpus / name)
        videos = dd.read("video.scp")
        assert sorted(videos) == sorted(dd.utt_ids())
        assert validate_datadir(dd.path).ok
    utt = DataDir(tiny_corpus / "mini_test").utt_ids()[0]
    video = read_video(videos[sorted(videos)[0]])
    dd = DataDir(tiny_corpus / "mini_test")
    video = read_video(dd.read("video.scp")[utt], utt)
    check_alignment(len(video), float(dd.read("utt2dur")[utt]), utt)
    assert video.shape[1:] == (SIZE, SIZE) and 20 < video.mean() < 230


def test_frame_rate_conversion_and_bad_videos(tmp_path):
    frames = np.tile(np.arange(60, dtype=np.uint8)[:, None, None] * 4, (1, 88, 88))
    write_video(tmp_path / "30fps.mp4", frames, fps=30)
    video = read_video(tmp_path / "30fps.mp4")
    assert len(video) == 50 and abs(int(video[-1].mean()) - int(frames[-1].mean())) < 12  # 2 s at 25 fps
    write_video(tmp_path / "wide.mp4", np.zeros((10, 240, 320), np.uint8))
    with pytest.raises(VideoError, match="320x240 are not a mouth crop"):
        read_video(tmp_path / "wide.mp4")
    write_video(tmp_path / "slow.mp4", frames[:20], fps=10)
    with pytest.raises(VideoError, match="10.00 fps is far from 25 fps"):
        read_video(tmp_path / "slow.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoError, match=r"broken.mp4\): cannot decode the video"):
        read_video(tmp_path / "broken.mp4", "u1")
    with pytest.raises(VideoError, match="utterance 'u1' .*not found"):
        read_video(tmp_path / "none.mp4", "u1")
    with pytest.raises(VideoError, match="lasts 2.00 s but the audio 3.00 s"):
        check_alignment(50, 3.0, "u1")


def test_visual_features_from_npy(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((30, 768), np.float16))
    feats = read_visual_features(tmp_path / "ok.npy")
    assert feats.shape == (30, 768) and feats.dtype == np.float32
    np.save(tmp_path / "flat.npy", np.ones(30))
    with pytest.raises(VideoError, match=r"expected a numeric \[frames, dim\] array"):
        read_visual_features(tmp_path / "flat.npy")
    np.save(tmp_path / "nan.npy", np.full((3, 4), np.nan))
    with pytest.raises(VideoError, match="NaN"):
        read_visual_features(tmp_path / "nan.npy")
    (tmp_path / "bad.npy").write_text("hello")
    with pytest.raises(VideoError, match="not a readable .npy"):
        read_visual_features(tmp_path / "bad.npy")
