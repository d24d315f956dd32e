"""Webdataset shards of token data (metis data shard) and streamed training from them: layout, the
split over ranks, batches that fit the budget and come back the same after a restart, training and
exact resume on shards, two gloo processes on shards, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, write_token_datadir
from typer.testing import CliRunner

from metis_cli.cli import app
from metis_cli.config import load_config
from metis_cli.data.shards import ShardData, StreamBatches, assigned_shards, write_shards
from metis_cli.errors import DataDirError, MetisError
from metis_cli.train.pretrain import PretrainLearner, pretrain

runner = CliRunner()
SMALL = [
    "model.transformer.dim=32",
    "model.transformer.n_layers=2",
    "model.transformer.n_heads=2",
    "model.transformer.ffn_dim=64",
    "data.max_frames=400",
    "data.max_utterance_frames=200",
    "data.pool_size=8",
    "train.log_every=1",
    "train.ckpt_every=2",
    "train.val_every=100",
    "optim.warmup_steps=2",
    "train.max_minutes=null",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    data = write_token_datadir(root / "train", n_utts=40)
    result = runner.invoke(app, ["data", "shard", str(data), "--out", str(root / "shards"), "--shard-mb", "0.004"])
    assert result.exit_code == 0, result.output
    return data, root / "shards"


def test_shards_hold_every_utterance_in_the_webdataset_layout(shards):
    data, out = shards
    index = json.loads((out / "shards.json").read_text())
    assert index["utterances"] == 40 and len(index["shards"]) >= 4 and index["meta"]["ssl_tokens"]["n_clusters"] == 16
    assert index["kinds"] == ["ssl_tokens", "acoustic_codes"]
    import webdataset as wds

    from metis_cli.data.arrays import ArrayStore

    tokens = ArrayStore(data / "ssl_tokens")
    samples = list(
        wds.WebDataset(
            [str(p) for p in sorted(out.glob("shard-*.tar"))], shardshuffle=False, empty_check=False
        ).decode()
    )
    assert sorted(s["__key__"] for s in samples) == tokens.keys()
    first = samples[0]
    assert (
        np.array_equal(first["ssl_tokens.npy"], tokens[first["__key__"]]) and first["acoustic_codes.npy"].shape[1] == 3
    )
    again = runner.invoke(app, ["data", "shard", str(data), "--out", str(out)])
    assert again.exit_code == 1 and "shards already written" in again.output


def test_shards_mix_speakers_unless_told_not_to(shards, tmp_path):
    data, out = shards
    in_shards = [
        u
        for shard in json.loads((out / "shards.json").read_text())["shards"]
        for u, _ in (line.split() for line in (out / f"{shard['name']}.lengths").read_text().splitlines())
    ]
    assert sorted(in_shards) == sorted(set(in_shards)) and in_shards != sorted(in_shards)  # seeded shuffle, each once
    kept = write_shards([data], tmp_path / "sorted", ("ssl_tokens",), shard_mb=0.004, shuffle_seed=None)
    in_order = [
        u
        for shard in kept["shards"]
        for u, _ in (
            line.split() for line in (tmp_path / "sorted" / f"{shard['name']}.lengths").read_text().splitlines()
        )
    ]
    assert in_order == sorted(in_order) and kept["shuffle_seed"] is None


def test_each_rank_streams_its_own_shards_in_batches_that_fit(shards):
    _, out = shards
    data = ShardData(out, ("ssl_tokens",))
    n = len(data.shards)
    split = [assigned_shards(n, 0, 0, rank, 2) for rank in range(2)]
    assert sorted(split[0] + split[1]) == list(range(n)) and not set(split[0]) & set(split[1])
    assert assigned_shards(n, 1, 0, 0, 2) != split[0] or n < 3  # another order every epoch
    seen = []
    for rank in range(2):
        batches = StreamBatches(data, 400, 200, seed=0, pool_size=8, world_size=2, rank=rank)
        epoch = sum(s["utterances"] for i, s in enumerate(data.shards) if i in split[rank])
        count = 0
        for step in range(1000):
            pieces = batches(step)
            assert len(pieces) * max(p.frames for p in pieces) <= 400
            seen += [p.utt for p in pieces]
            count += len(pieces)
            if count >= epoch:
                break
        assert count == epoch
    assert sorted(seen) == sorted(u for s in range(n) for u, _ in data.lengths(s))  # every utterance once per epoch
    batch = data.collate(StreamBatches(data, 400, 200, seed=0, pool_size=8)(0))
    assert batch["ssl_tokens"].shape[0] == len(batch["lengths"]) and batch["valid"].sum() == batch["lengths"].sum()


def test_a_restarted_stream_gives_the_same_batch_n(shards):
    _, out = shards
    data = ShardData(out, ("ssl_tokens",))
    first = StreamBatches(data, 400, 200, seed=3, pool_size=8)
    plan = [[(p.utt, p.start, p.frames) for p in first(step)] for step in range(30)]  # crosses an epoch (40 utterances)
    restarted = StreamBatches(ShardData(out, ("ssl_tokens",)), 400, 200, seed=3, pool_size=8)
    assert [(p.utt, p.start, p.frames) for p in restarted(17)] == plan[17]
    assert [(p.utt, p.start, p.frames) for p in restarted(5)] == plan[5]  # backwards: replayed from the start
    other = StreamBatches(data, 400, 200, seed=4, pool_size=8)
    assert [[(p.utt, p.start, p.frames) for p in other(step)] for step in range(5)] != plan[:5]


def test_pretraining_on_shards_resumes_exactly(shards, tmp_path):
    _, out = shards
    config = load_config(
        REPO / "conf" / "mini" / "pretrain.yaml", SMALL + ["train.max_steps=4"], PretrainLearner.resolve
    )
    result = pretrain(config, tmp_path / "exp", [out])
    losses = [
        json.loads(line) for line in (tmp_path / "exp" / "metrics.jsonl").read_text().splitlines() if '"loss"' in line
    ]
    assert (
        result["step"] == 4
        and [r["step"] for r in losses] == [1, 2, 3, 4]
        and all(np.isfinite(r["loss"]) for r in losses)
    )
    import shutil

    shutil.rmtree(tmp_path / "exp" / "checkpoints" / "step_00000004")
    (tmp_path / "exp" / "metrics.jsonl").write_text("")
    pretrain(
        load_config(REPO / "conf" / "mini" / "pretrain.yaml", SMALL + ["train.max_steps=4"], PretrainLearner.resolve),
        tmp_path / "exp",
        [out],
    )
    resumed = [
        json.loads(line) for line in (tmp_path / "exp" / "metrics.jsonl").read_text().splitlines() if '"loss"' in line
    ]
    assert [r["step"] for r in resumed] == [3, 4] and resumed[0]["loss"] == pytest.approx(losses[2]["loss"], rel=1e-5)


def test_two_gloo_processes_train_on_shards(shards, tmp_path):
    from test_pretrain_s2a import _free_port

    _, out = shards
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "metis_cli",
        "pretrain",
        str(REPO / "conf" / "mini" / "pretrain.yaml"),
        str(tmp_path / "ddp"),
        *SMALL,
        "train.max_steps=2",
        "--train-data",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "step 2: weights identical on all 2 ranks" in (tmp_path / "ddp" / "log" / "train.log").read_text()


def test_bad_shards_are_reported(shards, tmp_path):
    data, out = shards
    with pytest.raises(DataDirError, match="no shards.json"):
        ShardData(tmp_path, ("ssl_tokens",))
    with pytest.raises(DataDirError, match="not pitch"):
        ShardData(out, ("pitch",))
    with pytest.raises(MetisError, match="every reader needs at least one"):
        assigned_shards(2, 0, 0, rank=0, world_size=4)
    broken = tmp_path / "broken"
    write_shards([data], broken, ("ssl_tokens",), shard_mb=1)
    (broken / "shard-000000.tar").write_bytes(b"not a tar file" * 100)
    stream = ShardData(broken, ("ssl_tokens",))
    with pytest.raises(DataDirError, match="shard-000000.tar: unreadable shard"):
        stream.collate(StreamBatches(stream, 400, 200)(0))
    from metis_cli.train.finetune import FinetuneLearner

    with pytest.raises(MetisError, match="shards .* are for pre-training and S2A"):
        FinetuneLearner(None, {"task": "se"}, [out])
