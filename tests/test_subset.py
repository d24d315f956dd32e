import pytest
from conftest import make_datadir

from metis_cli.data.datadir import DataDir
from metis_cli.data.subset import select_utts, split_datadir, subset_datadir
from metis_cli.data.validate import validate_datadir
from metis_cli.errors import DataDirError


def test_subset_keeps_every_file_consistent(datadir, tmp_path):
    out = subset_datadir(datadir, tmp_path / "sub", ["spkB_u1", "spkA_u0"])
    assert out.utt_ids() == ["spkA_u0", "spkB_u1"]
    assert set(out.read("text")) == {"spkA_u0", "spkB_u1"}
    assert out.read("spk2utt") == {"spkA": "spkA_u0", "spkB": "spkB_u1"}
    assert validate_datadir(out.path).ok


def test_subset_unknown_ids_and_no_overwrite(datadir, tmp_path):
    with pytest.raises(DataDirError, match=r"1 unknown utterance id\(s\): 'ghost'"):
        subset_datadir(datadir, tmp_path / "sub", ["spkA_u0", "ghost"])
    subset_datadir(datadir, tmp_path / "sub", ["spkA_u0"])
    with pytest.raises(DataDirError, match="already holds a data dir; pass --overwrite"):
        subset_datadir(datadir, tmp_path / "sub", ["spkA_u1"])
    assert DataDir(tmp_path / "sub").utt_ids() == ["spkA_u0"]


def test_select_rules(datadir, tmp_path):
    dd = DataDir(datadir)
    assert select_utts(dd, first=2) == ["spkA_u0", "spkA_u1"]
    assert select_utts(dd, last=1) == ["spkB_u1"]
    assert select_utts(dd, random_n=2, seed=3) == select_utts(dd, random_n=2, seed=3)
    spk_list = tmp_path / "spk.list"
    spk_list.write_text("spkB\n")
    assert select_utts(dd, spk_list=spk_list) == ["spkB_u0", "spkB_u1"]
    with pytest.raises(DataDirError, match="exactly one of"):
        select_utts(dd, first=1, last=1)
    with pytest.raises(DataDirError, match="asked for 9 utterances, the data dir has 4"):
        select_utts(dd, first=9)


def test_split_by_utterance_and_speaker(tmp_path):
    src = make_datadir(tmp_path, speakers=("a", "b", "c"), utts_per_speaker=3)
    parts = split_datadir(src, 4, by="utt")
    assert [p.path.name for p in parts] == ["1", "2", "3", "4"] and parts[0].path.parent.name == "split4utt"
    ids = [u for p in parts for u in p.utt_ids()]
    assert ids == DataDir(src).utt_ids() and [len(p.utt_ids()) for p in parts] == [2, 2, 3, 2]
    by_spk = split_datadir(src, 2, by="spk")
    assert sorted(len(p.speakers()) for p in by_spk) == [1, 2]
    assert all(validate_datadir(p.path).ok for p in parts + by_spk)
    with pytest.raises(DataDirError, match="cannot split 3 speakers into 4 parts"):
        split_datadir(src, 4, by="spk")


def test_split_is_reused_when_up_to_date(tmp_path):
    src = make_datadir(tmp_path)
    first = split_datadir(src, 2)
    marker = first[0].path / ".complete"
    stamp = marker.stat().st_mtime_ns
    split_datadir(src, 2)
    assert marker.stat().st_mtime_ns == stamp
