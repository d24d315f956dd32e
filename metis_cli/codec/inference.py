"""Using a trained codec: load it from its experiment dir, encode data dirs to ``acoustic_codes``
(per-utterance [frames, n_codebooks] int16 arrays, sharded and resumable), decode codes to wav files."""

from __future__ import annotations

import itertools
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from metis_cli.checkpoint import load_weights
from metis_cli.codec.model import Codec, CodecConfig
from metis_cli.codec.world import WorldCodec, WorldCodecConfig, codec_kind
from metis_cli.config import read_exp_config
from metis_cli.data.arrays import ArrayStore, ShardedWriter, write_meta
from metis_cli.data.datadir import DataDir, id_path
from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)


def build_codec(model_config: dict):
    """An untrained codec of the kind ``model_config`` names (``kind: world``: the parametric WorldCodec;
    ``neural`` or nothing: the neural Codec). Both encode [B, samples] -> [B, frames, n_codebooks] and
    decode back, and carry ``cfg.sample_rate``, ``cfg.hop_length`` and ``cfg.quantizer``."""
    if codec_kind(model_config) == "world":
        return WorldCodec(WorldCodecConfig.from_dict(model_config))
    return Codec(CodecConfig.from_dict(model_config))


def load_codec(exp_dir, checkpoint=None, device: str = "cpu") -> Codec | WorldCodec:
    """The codec of an experiment dir, of either kind: its config.yaml and the newest readable checkpoint
    (or ``checkpoint``)."""
    model = build_codec(read_exp_config(exp_dir)["model"])
    load_weights(exp_dir, "codec", model, checkpoint, device, what="codec (`metis codec train`)")
    return model.to(device).eval()


_worker: dict = {}


def _init_worker(exp_dir: str, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    _worker["codec"] = load_codec(exp_dir)


def _encode_one(job):
    from metis_cli.audio import load_audio

    utt, source, start, end = job
    codec = _worker["codec"]
    try:
        wav, _ = load_audio(source, codec.cfg.sample_rate, start=start, end=end, utt_id=utt, commands=True)
        codes = codec.encode(torch.from_numpy(wav)[None])[0]
    except MetisError as exc:  # unreadable, or (the WORLD codec) shorter than one frame
        return utt, None, f"utterance '{utt}': {exc}" if utt not in str(exc) else str(exc)
    return utt, codes.numpy().astype(np.int16), ""


def world_features_of(exp_dir, data_dir) -> dict:
    """The WORLD features a parametric codec's training analysed, when they are of ``data_dir`` (its train
    set): {utterance: features}; empty otherwise. Analysis is deterministic, so quantising them gives the
    codes a fresh analysis would."""
    store_dir = Path(exp_dir) / "features"
    if not (store_dir / "meta.json").is_file():
        return {}
    store = ArrayStore(store_dir)
    if store.meta.get("data_dir") != str(Path(data_dir).resolve()):
        return {}
    return {u: np.asarray(store[u]) for u in store.keys()}


def encode_datadir(exp_dir, data_dir, out_dir=None, num_jobs: int = 1) -> dict:
    """Codes of every utterance of ``data_dir`` into ``out_dir`` (default ``<data_dir>/acoustic_codes``)."""
    from metis_cli.audio import audio_info

    data = DataDir(data_dir)
    out = Path(out_dir) if out_dir else data.path / "acoustic_codes"
    codec = load_codec(exp_dir)
    sources = data.audio_sources()
    utts = sorted(sources)
    if not utts:
        raise MetisError(f"{data.file('wav.scp')}: no utterances to encode")
    rate = audio_info(sources[utts[0]][0], utt_id=utts[0], commands=True).sample_rate
    if rate != codec.cfg.sample_rate:
        logger.info("%s: audio at %d Hz is resampled to the codec's %d Hz", data.path, rate, codec.cfg.sample_rate)
    writer = ShardedWriter(out, utts, num_jobs)
    todo = [u for u in utts if u not in writer.done]
    started = time.time()
    analysed = world_features_of(exp_dir, data.path) if codec.kind == "world" else {}
    if analysed:
        logger.info(
            "%s: %d utterances quantised from the WORLD features the codec was trained on",
            data.path,
            sum(u in analysed for u in todo),
        )
    reused = ((u, codec.encode_features(analysed[u]).numpy().astype(np.int16), "") for u in todo if u in analysed)
    jobs = [(u, *sources[u]) for u in todo if u not in analysed]
    if num_jobs > 1 and jobs:
        pool = ProcessPoolExecutor(num_jobs, initializer=_init_worker, initargs=(str(exp_dir), 1))
        results = pool.map(_encode_one, jobs, chunksize=4)
    else:
        pool = None
        _worker["codec"] = codec
        results = map(_encode_one, jobs)
    try:
        failed = writer.write_all(itertools.chain(reused, results), len(todo), f"codec encode {data.path.name}")
    finally:
        if pool is not None:
            pool.shutdown()
    if failed:
        with open(out / "failed", "a") as f:
            f.writelines(f"{u}\t{r}\n" for u, r in sorted(failed.items()))
    cfg = codec.cfg
    write_meta(
        out,
        kind="acoustic_codes",
        codec=str(Path(exp_dir).resolve()),
        codec_kind=codec.kind,
        sample_rate=cfg.sample_rate,
        hop_length=cfg.hop_length,
        n_codebooks=cfg.quantizer.n_codebooks,
        codebook_size=cfg.quantizer.codebook_size,
    )
    store = ArrayStore(out)
    if not len(store):
        raise MetisError(
            f"{out}: none of the {len(utts)} utterances could be encoded (e.g. {next(iter(failed.values()), '')}); "
            f"see {out / 'failed'}"
        )
    return {
        "utterances": len(store),
        "failed": len(failed),
        "frames": sum(e.shape[0] for e in store.entries.values()),
        "seconds": time.time() - started,
        "out": str(out),
    }


def decode_codes(exp_dir, codes_dir, out_dir, data_dir=None) -> dict:
    """wav files (and a wav.scp) from a store of codes; with ``data_dir`` (the audio the codes came
    from), a decode dir of task ``resynth`` that `metis score` can compare with the originals."""
    from metis_cli.audio import save_audio
    from metis_cli.log import progress

    codec = load_codec(exp_dir)
    store = ArrayStore(codes_dir)
    if not len(store):
        raise MetisError(f"{codes_dir}: no codes to decode")
    out = Path(out_dir)
    wav_scp = {}
    with progress() as bar:
        task = bar.add_task(f"codec decode {store.dir.name}", total=len(store))
        for utt in store.keys():
            codes = torch.from_numpy(np.asarray(store[utt], dtype=np.int64))
            if codes.ndim != 2:
                raise MetisError(
                    f"{codes_dir}: utterance '{utt}': codes of shape {tuple(codes.shape)}, expected [frames, codebooks]"
                )
            try:
                wav = codec.decode(codes[None])[0].numpy()
            except MetisError as exc:
                raise MetisError(f"{codes_dir}: utterance '{utt}': {exc}") from None
            wav_scp[utt] = str(save_audio(id_path(out / "wav", utt, ".wav"), wav, codec.cfg.sample_rate).resolve())
            bar.advance(task)
    if data_dir is not None:
        from metis_cli.data.decode_dir import write_decode_dir

        write_decode_dir(
            out, "resynth", data_dir, wav_scp, sample_rate=codec.cfg.sample_rate, codec=str(Path(exp_dir).resolve())
        )
    else:
        DataDir(out).write("wav.scp", wav_scp)
    return {"utterances": len(wav_scp), "out": str(out)}
