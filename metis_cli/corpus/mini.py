"""The embedded corpus: multi-speaker English speech synthesised offline, and task sets derived from it.

Speakers are Debian voices (flite, festival) plus perturbed copies of them: the engines move the mean
pitch and the speaking rate, sox moves the formants ("vocal tract length": ``speed`` then ``tempo``
back), and each speaker has its own loudness. Test speakers are held out of training (zero-shot) and
read held-out sentences. Every random choice comes from ``seed``; reruns reuse finished utterances.

Layout under ``out_dir``::

    wav/<speaker>/<utt>.wav, <utt>.json   16 kHz renderings and their phone/word timings
    wav/<set>/<utt>.wav                   derived inputs (noisy speech, mixtures)
    video/<speaker>/<utt>.mp4             25 fps 88x88 grayscale mouth videos (train, dev, test)
    mini_{train,dev,test}/                wav.scp text utt2spk spk2utt utt2dur phones.ctm words.ctm
                                          (+ prompt.scp utt2prompt prompt_text in dev and test)
                                          (+ video.scp: rendered mouth videos, metis_cli/corpus/lips.py)
    mini_se_{dev,test}/                   + noisy.scp utt2snr utt2noise utt2rt60
    mini_tse_{dev,test}/                  + mix.scp enroll.scp utt2sir utt2interferer utt2enroll prompt_text
    mini_vc_{dev,test}/                   + src.scp ref.scp utt2source_spk
    speakers.tsv, corpus.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from metis_cli.audio import load_audio, save_audio
from metis_cli.corpus import noise
from metis_cli.corpus.rng import rng_for
from metis_cli.corpus.templates import TEMPLATE_PREFIX, template_sentences
from metis_cli.corpus.voices import VOICES, check_voices, synthesize
from metis_cli.data.datadir import DataDir, TimedToken, atomic_write_text, format_ctm, id_path
from metis_cli.errors import CorpusError, MetisError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MIN_DURATION, MAX_DURATION = 2.0, 8.0
LOUDNESS_DBFS = -24.0


@dataclass(frozen=True)
class Speaker:
    """A corpus speaker: a base voice, a mean pitch (Hz, where the voice allows), a formant warp
    (>1 shorter vocal tract), a duration stretch (>1 slower) and a level offset in dB."""

    id: str
    voice: str
    f0_mean: float | None = None
    warp: float = 1.0
    stretch: float = 1.0
    gain_db: float = 0.0


SPEAKERS = {
    s.id: s
    for s in (
        Speaker("spk01", "flite_kal16"),
        Speaker("spk02", "flite_awb", gain_db=-2.0),
        Speaker("spk03", "flite_rms", gain_db=1.0),
        Speaker("spk04", "flite_slt", gain_db=-1.0),
        Speaker("spk05", "festival_kal", gain_db=2.0),
        Speaker("spk06", "festival_ked", gain_db=-3.0),
        Speaker("spk07", "festival_slt_hts"),
        Speaker("spk08", "flite_kal16", f0_mean=140, warp=1.06, stretch=0.92, gain_db=1.5),
        Speaker("spk09", "festival_ked", f0_mean=150, warp=1.12, stretch=1.05, gain_db=-1.5),
        Speaker("spk10", "festival_kal", f0_mean=85, warp=0.94, stretch=1.10, gain_db=0.5),
        Speaker("spk11", "flite_slt", warp=0.88, gain_db=-2.5),
        Speaker("spk12", "flite_rms", warp=1.10, stretch=0.95, gain_db=2.5),
        # Held out for zero-shot tests.
        Speaker("spk13", "flite_awb", warp=1.08, stretch=1.08, gain_db=-0.5),
        Speaker("spk14", "festival_slt_hts", warp=0.92, stretch=0.95, gain_db=1.0),
        Speaker("spk15", "flite_kal16", f0_mean=190, warp=1.16, gain_db=-1.0),
        Speaker("spk16", "festival_ked", f0_mean=95, warp=0.95, stretch=0.90, gain_db=0.0),
        # Training-only speakers of the 'large' size.
        Speaker("spk17", "flite_kal16", f0_mean=110, warp=0.97, stretch=1.04, gain_db=0.5),
        Speaker("spk18", "flite_kal16", f0_mean=165, warp=1.10, stretch=0.97, gain_db=-1.0),
        Speaker("spk19", "flite_awb", warp=0.93, stretch=0.96, gain_db=1.0),
        Speaker("spk20", "flite_awb", warp=1.14, gain_db=-2.0),
        Speaker("spk21", "flite_rms", warp=0.90, stretch=1.06),
        Speaker("spk22", "flite_rms", warp=1.04, stretch=0.90, gain_db=-1.5),
        Speaker("spk23", "flite_slt", warp=1.06, stretch=1.04, gain_db=1.5),
        Speaker("spk24", "flite_slt", warp=0.95, stretch=0.92, gain_db=-0.5),
        Speaker("spk25", "festival_kal", f0_mean=120, warp=1.03, stretch=0.96, gain_db=-1.0),
        Speaker("spk26", "festival_kal", f0_mean=100, warp=1.12, stretch=1.06, gain_db=1.0),
        Speaker("spk27", "festival_ked", f0_mean=120, warp=1.05, gain_db=2.0),
        Speaker("spk28", "festival_ked", f0_mean=170, warp=1.16, stretch=0.94, gain_db=-2.0),
        Speaker("spk29", "festival_slt_hts", warp=1.05, stretch=1.05),
        Speaker("spk30", "festival_slt_hts", warp=0.87, gain_db=-1.0),
        Speaker("spk31", "flite_kal16", f0_mean=95, warp=0.90, stretch=1.08, gain_db=1.0),
        Speaker("spk32", "flite_awb", warp=1.02, stretch=1.12, gain_db=0.5),
        Speaker("spk33", "flite_rms", warp=1.15, stretch=1.02, gain_db=1.0),
        Speaker("spk34", "flite_slt", warp=1.12, stretch=0.98, gain_db=-1.5),
        Speaker("spk35", "festival_kal", f0_mean=140, warp=0.91, stretch=0.93),
        Speaker("spk36", "festival_ked", f0_mean=105, warp=0.89, stretch=1.08, gain_db=1.5),
        Speaker("spk37", "festival_slt_hts", warp=1.10, stretch=0.92, gain_db=2.0),
        Speaker("spk38", "flite_kal16", f0_mean=210, warp=1.18, gain_db=-0.5),
        Speaker("spk39", "flite_slt", warp=0.86, stretch=1.10, gain_db=0.5),
        Speaker("spk40", "festival_kal", f0_mean=75, warp=0.88, gain_db=-1.5),
    )
}


@dataclass(frozen=True)
class CorpusSize:
    """Who reads what. Seen speakers read ``utts_per_seen`` hand-written sentences (``dev_per_seen`` of
    them go to dev), test speakers ``utts_per_test`` of the ``held_out_sentences``. Larger sizes add
    training speech only, so that dev and test stay those of ``default``: ``extra_speakers`` (train
    only) and ``template_utts`` template sentences (``templates.py``) for every training speaker, drawn
    from ``template_pool`` of them."""

    seen_speakers: tuple[str, ...]
    test_speakers: tuple[str, ...]
    utts_per_seen: int  # train + dev, per seen speaker
    dev_per_seen: int
    utts_per_test: int
    held_out_sentences: int
    extra_speakers: tuple[str, ...] = ()
    template_utts: int = 0
    template_pool: int = 0
    videos: bool = True  # mouth videos for lip-to-speech


_DEFAULT_SIZE = CorpusSize(
    seen_speakers=tuple(f"spk{i:02d}" for i in range(1, 13)),
    test_speakers=("spk13", "spk14", "spk15", "spk16"),
    utts_per_seen=60,
    dev_per_seen=5,
    utts_per_test=25,
    held_out_sentences=40,
)
SIZES = {
    "default": _DEFAULT_SIZE,
    # The default's dev and test sets, and 8.5x its training speech: 24 more training speakers, and 120
    # template sentences for each of the 36 (S2A overfits the default's 33 minutes; docs/s2a_mini_neural_codec.md).
    "large": dataclasses.replace(
        _DEFAULT_SIZE,
        extra_speakers=tuple(f"spk{i:02d}" for i in range(17, 41)),
        template_utts=120,
        template_pool=3000,
        videos=False,
    ),
    "tiny": CorpusSize(
        seen_speakers=("spk01", "spk04", "spk05", "spk07"),
        test_speakers=("spk13", "spk16"),
        utts_per_seen=4,
        dev_per_seen=1,
        utts_per_test=3,
        held_out_sentences=6,
    ),
}


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    sentence_id: str
    text: str


def load_sentences() -> dict[str, str]:
    """sentence id (s0001, ...) -> text, from the bundled public-domain list."""
    text = resources.files("metis_cli.corpus").joinpath("sentences.txt").read_text(encoding="utf-8")
    return {f"s{i:04d}": line.strip() for i, line in enumerate(text.splitlines(), start=1) if line.strip()}


def plan_splits(size: CorpusSize, seed: int) -> dict[str, list[Utterance]]:
    """Which speaker reads which sentence, per split. Test speakers read only held-out sentences."""
    sentences = load_sentences()
    ids = list(sentences)
    order = rng_for(seed, "sentences").permutation(len(ids))
    held_out = [ids[i] for i in order[: size.held_out_sentences]]
    seen_pool = [ids[i] for i in order[size.held_out_sentences :]]
    splits: dict[str, list[Utterance]] = {"mini_train": [], "mini_dev": [], "mini_test": []}

    def utt(spk: str, sid: str) -> Utterance:
        return Utterance(f"{spk}_{sid}", spk, sid, sentences[sid])

    for spk in size.seen_speakers:
        picks = rng_for(seed, "read", spk).choice(len(seen_pool), size.utts_per_seen, replace=False)
        chosen = [seen_pool[i] for i in picks]
        splits["mini_dev"] += [utt(spk, sid) for sid in chosen[: size.dev_per_seen]]
        splits["mini_train"] += [utt(spk, sid) for sid in chosen[size.dev_per_seen :]]
    for spk in size.test_speakers:
        picks = rng_for(seed, "read", spk).choice(len(held_out), size.utts_per_test, replace=False)
        splits["mini_test"] += [utt(spk, held_out[i]) for i in picks]
    if size.template_utts:
        templates = template_sentences(size.template_pool, rng_for(seed, "templates"))
        template_ids = list(templates)
        for spk in size.seen_speakers + size.extra_speakers:
            picks = rng_for(seed, "templates", spk).choice(len(template_ids), size.template_utts, replace=False)
            splits["mini_train"] += [
                Utterance(f"{spk}_{template_ids[i]}", spk, template_ids[i], templates[template_ids[i]]) for i in picks
            ]
    return {name: sorted(utts, key=lambda u: u.utt_id) for name, utts in splits.items()}


def plan_vc_pairs(utts: list[Utterance], seed: int, name: str) -> list[tuple[Utterance, Utterance]]:
    """(source, target) pairs: each source utterance is paired with another speaker of the same split
    reading the same sentence (the target is the ground truth that VC should produce)."""
    speakers = sorted({u.speaker for u in utts})
    sentences = load_sentences()
    pairs = []
    for src in utts:
        others = [s for s in speakers if s != src.speaker]
        if not others:
            continue
        target_spk = others[rng_for(seed, name, "target", src.utt_id).integers(len(others))]
        target = Utterance(f"{target_spk}_{src.sentence_id}", target_spk, src.sentence_id, sentences[src.sentence_id])
        pairs.append((src, target))
    return pairs


def _sox_perturb(raw: Path, out: Path, speaker: Speaker, engine_stretched: bool) -> None:
    effects = []
    if speaker.warp != 1.0:
        # speed scales pitch, formants and time by `warp`; tempo restores the time scale only.
        effects += ["speed", f"{speaker.warp}", "tempo", "-s", f"{1 / speaker.warp:.6f}"]
    if speaker.stretch != 1.0 and not engine_stretched:
        effects += ["tempo", "-s", f"{1 / speaker.stretch:.6f}"]
    # -D: no dither, so that the same seed gives the same samples.
    cmd = ["sox", "-D", str(raw), "-b", "16", str(out), *effects, "rate", "-v", str(SAMPLE_RATE), "channels", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CorpusError(f"sox failed on {raw}: {proc.stderr.strip()}")


def render_utterance(utt: Utterance, wav_path: Path) -> dict:
    """Synthesises one utterance to ``wav_path`` (16 kHz) with timings in ``<wav_path>.json``.

    Skips the work if both files exist. Returns the metadata (text, duration, phones, words).
    """
    meta_path = wav_path.with_suffix(".json")
    if wav_path.is_file() and meta_path.is_file():
        return json.loads(meta_path.read_text())
    speaker = SPEAKERS[utt.speaker]
    with tempfile.TemporaryDirectory(prefix="metis_mini_") as tmp:
        raw = Path(tmp) / "raw.wav"
        rendering = synthesize(speaker.voice, utt.text, raw, speaker.f0_mean, speaker.stretch)
        raw_wav, raw_sr = load_audio(raw, utt_id=utt.utt_id)
        perturbed = Path(tmp) / "perturbed.wav"
        _sox_perturb(raw, perturbed, speaker, VOICES[speaker.voice].stretch_control)
        wav, _ = load_audio(perturbed, SAMPLE_RATE, utt_id=utt.utt_id)
    # Timings come from the engine; sox's tempo changes rescale them by the overall length ratio.
    ratio = (len(wav) / SAMPLE_RATE) / (len(raw_wav) / raw_sr)
    rms = np.sqrt(np.mean(wav.astype(np.float64) ** 2)) + 1e-9
    wav = wav * (10 ** ((LOUDNESS_DBFS + speaker.gain_db) / 20) / rms)
    wav = wav * noise.peak_limit(wav)

    duration = round(len(wav) / SAMPLE_RATE, 4)

    def scaled(items: list[TimedToken]) -> list[list]:
        # Some voices (flite kal16) cut the final pause short of the time they report: clip to the audio.
        return [
            [round(t.start * ratio, 4), round(min(t.end * ratio, duration) - t.start * ratio, 4), t.token]
            for t in items
            if t.start * ratio < duration
        ]

    meta = {
        "utt_id": utt.utt_id,
        "speaker": utt.speaker,
        "text": utt.text,
        "duration": duration,
        "phones": scaled(rendering.phones),
        "words": scaled(rendering.words),
    }
    atomic_write_text(meta_path, json.dumps(meta) + "\n")
    save_audio(wav_path, wav, SAMPLE_RATE)
    return meta


def _render_all(utts: list[Utterance], wav_root: Path, num_jobs: int) -> dict[str, dict]:
    from metis_cli.log import progress

    todo = {u.utt_id: u for u in utts}
    metas: dict[str, dict] = {}
    paths = {uid: wav_root / u.speaker / f"{uid}.wav" for uid, u in todo.items()}
    with progress() as bar:
        task = bar.add_task("synthesising", total=len(todo))
        if num_jobs <= 1:
            for uid, u in todo.items():
                metas[uid] = render_utterance(u, paths[uid])
                bar.advance(task)
        else:
            with ProcessPoolExecutor(num_jobs) as pool:
                futures = {pool.submit(render_utterance, u, paths[uid]): uid for uid, u in todo.items()}
                for future in as_completed(futures):
                    uid = futures[future]
                    try:
                        metas[uid] = future.result()
                    except MetisError:
                        raise
                    except Exception as exc:
                        raise CorpusError(f"utterance '{uid}': synthesis failed: {exc}") from exc
                    bar.advance(task)
    for uid, meta in metas.items():
        meta["wav"] = str(paths[uid].resolve())
    return metas


def _usable(meta: dict) -> bool:
    return MIN_DURATION <= meta["duration"] <= MAX_DURATION


def _timings(items: list[list]) -> list[TimedToken]:
    return [TimedToken(start, duration, token) for start, duration, token in items]


def write_split(out: Path, utts: list[Utterance], metas: dict[str, dict]) -> DataDir:
    """A Kaldi data dir for ``utts`` (those of usable length)."""
    dd = DataDir(out)
    kept = [u for u in utts if _usable(metas[u.utt_id])]
    dd.write("wav.scp", {u.utt_id: metas[u.utt_id]["wav"] for u in kept})
    dd.write("text", {u.utt_id: u.text for u in kept})
    dd.write("utt2dur", {u.utt_id: f"{metas[u.utt_id]['duration']:.3f}" for u in kept})
    dd.write_utt2spk({u.utt_id: u.speaker for u in kept})
    atomic_write_text(dd.file("phones.ctm"), format_ctm({u.utt_id: _timings(metas[u.utt_id]["phones"]) for u in kept}))
    atomic_write_text(dd.file("words.ctm"), format_ctm({u.utt_id: _timings(metas[u.utt_id]["words"]) for u in kept}))
    return dd


def write_prompts(
    dd: DataDir, pool: dict[str, list[str]], wavs: dict[str, str], texts: dict[str, str], seed: int
) -> None:
    """prompt.scp, utt2prompt and prompt_text: for each utterance another utterance of its speaker and
    its transcript (zero-shot TTS prompts, and the same-speaker reference that speaker similarity is
    measured against)."""
    prompts = {}
    for utt, spk in dd.utt2spk.items():
        choices = [u for u in pool[spk] if u != utt]
        prompts[utt] = choices[rng_for(seed, dd.path.name, "prompt", utt).integers(len(choices))]
    dd.write("utt2prompt", prompts)
    dd.write("prompt.scp", {utt: wavs[p] for utt, p in prompts.items()})
    dd.write("prompt_text", {utt: texts[p] for utt, p in prompts.items()})


def _base_tables(dd: DataDir, utt_ids: list[str], src: DataDir) -> None:
    """text, utt2spk, spk2utt and utt2dur of a derived set, copied from the split it comes from."""
    for name in ("text", "utt2dur"):
        table = src.read(name)
        dd.write(name, {u: table[u] for u in utt_ids})
    utt2spk = src.utt2spk
    dd.write_utt2spk({u: utt2spk[u] for u in utt_ids})


def write_se_set(out: Path, src: DataDir, wav_dir: Path, seed: int) -> DataDir:
    """Speech enhancement: wav.scp is the clean reference, noisy.scp the input (noise, maybe reverb)."""
    dd = DataDir(out)
    utt2spk = src.utt2spk
    utts = list(utt2spk)
    noisy, snrs, kinds, rt60s = {}, {}, {}, {}
    for utt in utts:
        rng = rng_for(seed, out.name, utt)
        clean, _ = src.load_audio(utt)
        kind = noise.NOISE_TYPES[rng.integers(len(noise.NOISE_TYPES))]
        talkers = []
        if kind == "babble":
            others = [u for u in utts if utt2spk[u] != utt2spk[utt]] or [u for u in utts if u != utt]
            picks = rng.choice(len(others), min(4, len(others)), replace=False)
            talkers = [src.load_audio(others[i])[0] for i in picks]
        speech = clean.astype(np.float64)
        rt60 = 0.0
        if rng.random() < 0.5:
            rt60 = float(rng.uniform(0.2, 0.8))
            speech = noise.reverberate(speech, noise.room_impulse_response(rng, rt60, SAMPLE_RATE))
        snr = float(rng.uniform(-5, 20))
        mixture = speech + noise.scale_to_snr(clean, noise.make_noise(kind, rng, len(clean), SAMPLE_RATE, talkers), snr)
        path = save_audio(id_path(wav_dir, utt, ".wav"), mixture * noise.peak_limit(mixture), SAMPLE_RATE)
        noisy[utt], snrs[utt], kinds[utt], rt60s[utt] = str(path.resolve()), f"{snr:.2f}", kind, f"{rt60:.2f}"
    dd.write("wav.scp", src.read("wav.scp"))
    dd.write("noisy.scp", noisy)
    dd.write("utt2snr", snrs)
    dd.write("utt2noise", kinds)
    dd.write("utt2rt60", rt60s)
    _base_tables(dd, utts, src)
    return dd


def write_tse_set(
    out: Path,
    src: DataDir,
    wav_dir: Path,
    seed: int,
    pool: dict[str, list[str]],
    wavs: dict[str, str],
    texts: dict[str, str],
) -> DataDir:
    """Target speaker extraction: mix.scp (target + another speaker at SIR -5..5 dB), enroll.scp (another
    utterance of the target speaker) and prompt_text (its transcript, for text-guided TSE), wav.scp the
    clean target, interferer.scp the whole utterance the interference was cut from (the wrong voice, for
    scoring)."""
    dd = DataDir(out)
    utt2spk = src.utt2spk
    wav_scp = src.read("wav.scp")
    utts = list(utt2spk)
    mix, enroll, sirs, interferers, enroll_ids = {}, {}, {}, {}, {}
    for utt in utts:
        rng = rng_for(seed, out.name, utt)
        others = [u for u in utts if utt2spk[u] != utt2spk[utt]]
        enroll_choices = [u for u in pool[utt2spk[utt]] if u != utt]
        if not others or not enroll_choices:
            logger.warning("%s: no interferer or enrollment for %s; skipped", out.name, utt)
            continue
        interferer_id = others[rng.integers(len(others))]
        target, _ = src.load_audio(utt)
        interferer, _ = src.load_audio(interferer_id)
        interferer = noise.random_excerpt(rng, interferer, len(target))
        sir = float(rng.uniform(-5, 5))
        mixture = target + noise.scale_to_snr(target, interferer, sir)
        path = save_audio(id_path(wav_dir, utt, ".wav"), mixture * noise.peak_limit(mixture), SAMPLE_RATE)
        enroll_id = enroll_choices[rng.integers(len(enroll_choices))]
        mix[utt], sirs[utt], interferers[utt] = str(path.resolve()), f"{sir:.2f}", interferer_id
        enroll[utt], enroll_ids[utt] = wavs[enroll_id], enroll_id
    kept = list(mix)
    dd.write("wav.scp", {u: wav_scp[u] for u in kept})
    dd.write("mix.scp", mix)
    dd.write("enroll.scp", enroll)
    dd.write("utt2sir", sirs)
    dd.write("utt2interferer", interferers)
    dd.write("interferer.scp", {u: wav_scp[i] for u, i in interferers.items()})
    dd.write("utt2enroll", enroll_ids)
    dd.write("prompt_text", {u: texts[e] for u, e in enroll_ids.items() if e in texts})
    _base_tables(dd, kept, src)
    return dd


def write_vc_set(out: Path, pairs, metas: dict[str, dict], seed: int, ref_pool: dict[str, list[str]]) -> DataDir:
    """Voice conversion: src.scp (speaker A), ref.scp (another utterance of speaker B), wav.scp the ground
    truth (B reading A's sentence), text, utt2spk (B), utt2source_spk (A). Utterance id: <B>_<sentence>_from_<A>."""
    dd = DataDir(out)
    tables: dict[str, dict[str, str]] = {
        n: {} for n in ("wav.scp", "src.scp", "ref.scp", "text", "utt2dur", "utt2spk", "utt2source_spk")
    }
    for src_utt, target in pairs:
        src_meta, target_meta = metas[src_utt.utt_id], metas[target.utt_id]
        refs = [u for u in ref_pool[target.speaker] if u != target.utt_id]
        if not (_usable(src_meta) and _usable(target_meta) and refs):
            continue
        utt = f"{target.utt_id}_from_{src_utt.speaker}"
        ref = refs[rng_for(seed, out.name, utt).integers(len(refs))]
        tables["wav.scp"][utt] = target_meta["wav"]
        tables["src.scp"][utt] = src_meta["wav"]
        tables["ref.scp"][utt] = metas[ref]["wav"]
        tables["text"][utt] = target.text
        tables["utt2dur"][utt] = f"{target_meta['duration']:.3f}"
        tables["utt2spk"][utt] = target.speaker
        tables["utt2source_spk"][utt] = src_utt.speaker
    utt2spk = tables.pop("utt2spk")
    for name, table in tables.items():
        dd.write(name, table)
    dd.write_utt2spk(utt2spk)
    return dd


def _once(set_dir: Path, build) -> DataDir:
    """Builds a set unless its .done marker says an earlier run finished it."""
    marker = set_dir / ".done"
    if not marker.is_file():
        if set_dir.exists():
            shutil.rmtree(set_dir)
        build()
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return DataDir(set_dir)


def make_mini_corpus(
    out_dir, size: str = "default", seed: int = 0, num_jobs: int = 2, videos: bool = True
) -> dict[str, dict]:
    """Builds (or finishes building) the embedded corpus in ``out_dir``.

    ``videos``: render the mouth videos of train, dev and test (lip-to-speech; about a minute at the default
    size). A corpus built without them gets them from a later call with ``videos=True``.

    Returns, per data dir written, its utterance count, speaker count and minutes of audio.
    """
    if size not in SIZES:
        raise CorpusError(f"unknown corpus size '{size}'; choose from {', '.join(SIZES)}")
    out = Path(out_dir)
    spec = SIZES[size]
    settings = {"size": size, "seed": seed, "sample_rate": SAMPLE_RATE}
    settings_file = out / "corpus.json"
    if settings_file.is_file():
        previous = json.loads(settings_file.read_text())
        if {k: previous.get(k) for k in settings} != settings:
            raise CorpusError(
                f"{out} holds a corpus built with {json.dumps({k: previous.get(k) for k in settings})}; "
                f"asked for {json.dumps(settings)}. Use another directory or delete {out}."
            )
    speaker_ids = spec.seen_speakers + spec.extra_speakers + spec.test_speakers
    check_voices(SPEAKERS[s].voice for s in speaker_ids)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings_file, json.dumps(settings) + "\n")
    atomic_write_text(
        out / "speakers.tsv",
        "speaker\tvoice\tf0_mean\twarp\tstretch\tgain_db\tsplit\n"
        + "".join(
            f"{s.id}\t{s.voice}\t{s.f0_mean or '-'}\t{s.warp}\t{s.stretch}\t{s.gain_db}\t"
            f"{'test' if s.id in spec.test_speakers else 'train' if s.id in spec.extra_speakers else 'train/dev'}\n"
            for s in (SPEAKERS[i] for i in speaker_ids)
        ),
    )

    start = time.time()
    splits = plan_splits(spec, seed)
    vc_pairs = {
        "mini_vc_dev": plan_vc_pairs(splits["mini_dev"], seed, "mini_vc_dev"),
        "mini_vc_test": plan_vc_pairs(splits["mini_test"], seed, "mini_vc_test"),
    }
    jobs = {u.utt_id: u for utts in splits.values() for u in utts}
    jobs.update({t.utt_id: t for pairs in vc_pairs.values() for _, t in pairs})
    logger.info("synthesising %d utterances of %d speakers with %d jobs", len(jobs), len(speaker_ids), num_jobs)
    metas = _render_all(list(jobs.values()), out / "wav", num_jobs)
    logger.info("synthesis took %.1f s", time.time() - start)
    dropped = sorted(uid for uid in metas if not _usable(metas[uid]))
    if dropped:
        logger.warning(
            "%d utterance(s) outside %.0f-%.0f s left out: %s",
            len(dropped),
            MIN_DURATION,
            MAX_DURATION,
            ", ".join(dropped),
        )

    # Prompts, enrollments and VC references may be any other usable utterance of the speaker that
    # reads a hand-written sentence (so that larger sizes keep the default's dev and test sets).
    pool: dict[str, list[str]] = {}
    for uid in sorted(metas):
        if _usable(metas[uid]) and not jobs[uid].sentence_id.startswith(TEMPLATE_PREFIX):
            pool.setdefault(metas[uid]["speaker"], []).append(uid)
    wavs = {uid: m["wav"] for uid, m in metas.items()}

    texts = {uid: u.text for uid, u in jobs.items()}

    def build_split(name: str) -> None:
        dd = write_split(out / name, splits[name], metas)
        if name != "mini_train":
            write_prompts(dd, pool, wavs, texts, seed)

    dirs = {name: _once(out / name, lambda n=name: build_split(n)) for name in splits}
    for part in ("dev", "test"):
        src = dirs[f"mini_{part}"]
        for task, build in (
            ("se", lambda n, s=src: write_se_set(out / n, s, out / "wav" / n, seed)),
            ("tse", lambda n, s=src: write_tse_set(out / n, s, out / "wav" / n, seed, pool, wavs, texts)),
            ("vc", lambda n: write_vc_set(out / n, vc_pairs[n], metas, seed, pool)),
        ):
            name = f"mini_{task}_{part}"
            dirs[name] = _once(out / name, lambda n=name, b=build: b(n))
    # Lip-to-speech: a rendered mouth video for every utterance of train, dev and test (video.scp).
    if spec.videos and videos:
        from metis_cli.corpus.lips import write_corpus_videos

        write_corpus_videos(
            out / "video", [dirs[n].path for n in ("mini_train", "mini_dev", "mini_test")], seed, num_jobs
        )
    elif spec.videos:
        logger.info("mouth videos not rendered (lip-to-speech renders them: egs/l2s's stage 0)")
    else:
        logger.info("no mouth videos at size '%s' (lip-to-speech needs the default size)", size)
    logger.info("corpus ready in %s (%.1f s)", out, time.time() - start)
    return {name: _summary(dd) for name, dd in dirs.items()}


def _summary(dd: DataDir) -> dict:
    durations = [float(v) for v in dd.read("utt2dur").values()]
    return {"utterances": len(durations), "speakers": len(dd.speakers()), "minutes": sum(durations) / 60}
