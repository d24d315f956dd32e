"""Stage 2: SSL tokens for a data dir, from stored features or straight from audio.

Output folder (by default ``<data_dir>/ssl_tokens``): an array store of per-utterance token arrays
[frames] (see metis_cli.data.arrays), ``text.km`` (``<utt> <tok> <tok> ...``, readable), ``failed``,
and ``tokens.json`` (which tokenizer made them: ``tokenizer``, its kind, k-means or VQ, and ``kmeans``,
its dir whatever the kind, the key that fine-tuned models read; and how the features were made).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from metis_cli.data.arrays import ArrayStore, ArrayWriter, write_meta
from metis_cli.data.datadir import DataDir
from metis_cli.errors import MetisError
from metis_cli.tokenizer import load_tokenizer
from metis_cli.tokenizer.kmeans import FeatureDimensionError


def _write_text_km(out: Path) -> None:
    store = ArrayStore(out)
    lines = (f"{utt} {' '.join(map(str, store[utt].tolist()))}\n" for utt in store.keys())
    tmp = out / ".text.km.tmp"
    tmp.write_text("".join(lines))
    tmp.replace(out / "text.km")


def tokenize(out_dir, model_dir, feats_dir=None, data_dir=None, tokenizer: str = "auto") -> dict:
    """Assigns tokens to every utterance of a feature store (``feats_dir``), or of a data dir by
    extracting features on the fly with the extractor and stats the tokenizer was trained on.
    ``model_dir`` is a k-means or VQ tokenizer dir; ``tokenizer`` (auto, kmeans, vq) must match it."""
    from metis_cli.log import progress

    if (feats_dir is None) == (data_dir is None):
        raise MetisError("give either stored features (--feats) or a data dir to extract from (--data)")
    model = load_tokenizer(model_dir, tokenizer)
    kind = model.kind
    out = Path(out_dir)
    started = time.time()
    failed: dict[str, str] = {}
    if feats_dir is not None:
        store = ArrayStore(feats_dir)
        utts = store.keys()

        def frames(utt):
            return store[utt]
    else:
        from metis_cli.ssl.extract import load_stats, normalize
        from metis_cli.ssl.extractors import load_extractor

        ssl = model.config.get("ssl") or {}
        if "extractor" not in ssl:
            raise MetisError(
                f"{model_dir}/{kind}.json does not say which extractor made its features; tokenize --feats instead"
            )
        extractor = load_extractor(ssl["extractor"], ssl.get("layer"))
        mean, var = load_stats(ssl["stats"])
        data = DataDir(data_dir)
        if not data.has("wav.scp"):
            raise MetisError(f"{data.file('wav.scp')}: not found; give a data dir with audio (or --feats)")
        utts = data.utt_ids()

        def frames(utt):
            return normalize(extractor(data.load_audio(utt, 16000)[0]), mean, var)

    if not utts:
        raise MetisError(f"{feats_dir or data_dir}: no utterances to tokenize")
    with ArrayWriter(out, "part-1") as writer, progress() as bar:
        task = bar.add_task(f"tokenize {out}", total=len(utts))
        for utt in utts:
            bar.advance(task)
            if utt in writer:
                continue
            try:
                writer.write(utt, model.assign(frames(utt), utt))
            except FeatureDimensionError:
                raise
            except MetisError as exc:
                failed[utt] = str(exc)
    if failed:
        (out / "failed").write_text("".join(f"{u}\t{r}\n" for u, r in sorted(failed.items())))
        if len(failed) == len(utts):
            raise MetisError(
                f"{out}: none of the {len(utts)} utterances could be tokenized (e.g. {next(iter(failed.values()))}); "
                f"see {out / 'failed'}"
            )
    write_meta(out, kind="ssl_tokens", n_clusters=model.n_clusters, frame_rate=50)
    (out / "tokens.json").write_text(
        json.dumps(
            {
                "tokenizer": kind,
                "kmeans": str(Path(model_dir).resolve()),
                "ssl": model.config.get("ssl"),
                "source": str(feats_dir or data_dir),
            },
            indent=2,
        )
        + "\n"
    )
    _write_text_km(out)
    store = ArrayStore(out)
    return {
        "utterances": len(store),
        "failed": len(failed),
        "frames": sum(e.shape[0] for e in store.entries.values()),
        "seconds": time.time() - started,
    }
