import pytest

from metis_cli.data.datadir import (
    DataDir,
    TimedToken,
    id_path,
    read_ctm,
    read_table,
    spk2utt_from_utt2spk,
    write_ctm,
    write_table,
)
from metis_cli.errors import DataDirError


def test_table_round_trip_is_sorted_in_c_order(tmp_path):
    table = {"b_2": "x y z", "B_1": "upper", "a_10": "v", "a_9": "w", "ä_1": "unicode"}
    path = write_table(tmp_path / "text", table)
    # LC_ALL=C: uppercase before lowercase, byte order for non-ASCII, "a_10" before "a_9".
    assert [line.split()[0] for line in path.read_text().splitlines()] == ["B_1", "a_10", "a_9", "b_2", "ä_1"]
    assert read_table(path) == table


def test_values_keep_inner_spaces_and_tabs_split_the_key(tmp_path):
    path = tmp_path / "text"
    path.write_text("u1\thello  big world\nu2 one\n")
    assert read_table(path) == {"u1": "hello  big world", "u2": "one"}


def test_duplicate_id_names_both_lines(tmp_path):
    path = tmp_path / "utt2spk"
    path.write_text("u1 a\nu2 a\nu1 b\n")
    with pytest.raises(DataDirError, match=r"utt2spk: line 3: duplicate id 'u1' \(first on line 1\)"):
        read_table(path)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"u1 fine\nu2 caf\xe9\n")
    with pytest.raises(DataDirError, match=r"text: line 2: not valid UTF-8"):
        read_table(path)


def test_missing_value_and_empty_line(tmp_path):
    path = tmp_path / "wav.scp"
    path.write_text("u1 /a.wav\nu2\n")
    with pytest.raises(DataDirError, match=r"wav.scp: line 2: id 'u2' has no value"):
        read_table(path)
    path.write_text("u1 /a.wav\n\nu2 /b.wav\n")
    with pytest.raises(DataDirError, match=r"wav.scp: line 2: empty line"):
        read_table(path)


def test_write_rejects_ids_with_whitespace(tmp_path):
    with pytest.raises(DataDirError, match="contains whitespace"):
        write_table(tmp_path / "text", {"bad id": "x"})


@pytest.mark.parametrize(
    "bad, why",
    [
        ("../../x", "contains '/'"),
        ("..", "contains '/'"),
        ("a\\b", "contains '/'"),
        ("-rf", "starts with '-'"),
        ("a\x07b", "control characters"),
    ],
)
def test_ids_that_could_leave_a_folder_are_refused_where_they_are_read(tmp_path, bad, why):
    (tmp_path / "wav.scp").write_text(f"good /a.wav\n{bad} /b.wav\n")
    with pytest.raises(DataDirError, match=rf"wav.scp: line 2: id .* {why}.*; ids name files, so rename it"):
        read_table(tmp_path / "wav.scp")
    with pytest.raises(DataDirError, match=why):
        id_path(tmp_path, bad, ".wav")
    assert id_path(tmp_path, "spk1_u-0.1", ".wav") == tmp_path / "spk1_u-0.1.wav"


def test_spk2utt_from_utt2spk():
    assert spk2utt_from_utt2spk({"b_1": "b", "a_2": "a", "a_1": "a"}) == {"a": "a_1 a_2", "b": "b_1"}


def test_ctm_round_trip(tmp_path):
    timings = {"u2": [TimedToken(0.5, 0.25, "world")], "u1": [TimedToken(0.3, 0.1, "b"), TimedToken(0.0, 0.3, "a")]}
    path = write_ctm(tmp_path / "words.ctm", timings)
    assert path.read_text().splitlines()[0] == "u1 1 0.000 0.300 a"
    back = read_ctm(path)
    assert [t.token for t in back["u1"]] == ["a", "b"] and back["u2"][0].end == pytest.approx(0.75)


def test_datadir_writes_utt2spk_and_spk2utt_together(tmp_path):
    dd = DataDir(tmp_path)
    dd.write_utt2spk({"s1_b": "s1", "s1_a": "s1", "s2_a": "s2"})
    assert dd.read("spk2utt") == {"s1": "s1_a s1_b", "s2": "s2_a"}
    assert dd.speakers() == ["s1", "s2"] and dd.utt_ids() == ["s1_a", "s1_b", "s2_a"]


def test_segments_resolve_to_recording_slices(tmp_path):
    from conftest import write_wav

    wav = write_wav(tmp_path / "rec.wav", seconds=2.0)
    dd = DataDir(tmp_path / "d")
    dd.write("wav.scp", {"rec1": str(wav)})
    dd.write("segments", {"spk_u1": "rec1 0.25 1.00", "spk_u2": "rec1 1.00 -1"})
    dd.write_utt2spk({"spk_u1": "spk", "spk_u2": "spk"})
    assert len(dd.load_audio("spk_u1")[0]) == 12000
    assert len(dd.load_audio("spk_u2")[0]) == 16000
    with pytest.raises(DataDirError, match="unknown utterance id 'nope'"):
        dd.load_audio("nope")
    dd.write("segments", {"spk_u1": "rec1 1.0 0.5", "spk_u2": "rec1 1.00 -1"})
    with pytest.raises(DataDirError, match=r"'spk_u1': end 0.5 is not after start 1.0"):
        dd.segments()
