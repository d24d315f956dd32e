"""``metis convert --from amphion SRC --to DST``: the published checkpoint folders -> experiment dirs.

SRC is searched for ``*.safetensors`` files (the layout of the published MaskGCT and Metis folders:
``semantic_codec/``, ``acoustic_codec/model.safetensors`` + ``model_1.safetensors``, ``t2s_model/``,
``s2a_model/s2a_model_1layer/``, ``s2a_model/s2a_model_full/``, ``metis_base/``, ``metis_<task>/``),
the w2v-BERT normalisation stats (a ``*stats*.pt`` or ``*stats*.safetensors`` file with ``mean`` and
``var``) and the G2P phone table (``vocab.json``). Each file's layout is recognised from its keys. DST
gets one experiment dir per model, each as if this toolkit had trained it:

    DST/semantic_tokenizer/   the VQ SSL tokenizer (`metis tokenize --tokenizer vq`)
    DST/ssl_stats.safetensors  w2v-BERT 2.0 layer-17 normalisation stats
    DST/codec/                 acoustic codec (`metis codec ...`, decode --codec)
    DST/s2a_coarse/, DST/s2a_fine/   the two S2A models (decode --s2a DST/s2a_coarse --s2a DST/s2a_fine)
    DST/pretrain/              Metis base stage-1 model (`metis finetune --init DST/pretrain`)
    DST/<task>/                fine-tuned task models (tts, vc, se, tse, l2s, omni, maskgct_tts), LoRA merged

Every model is built and loaded before anything is written; DST is written through a temporary folder
and renamed, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from metis_cli.convert.amphion import (
    PUBLISHED,
    PUBLISHED_LORA_RANK,
    convert_codec,
    convert_s2a,
    convert_semantic_codec,
    convert_stage1,
    load_converted,
    merge_adapter,
    merge_lora,
)
from metis_cli.convert.layouts import detect_layout
from metis_cli.errors import MetisError

logger = logging.getLogger(__name__)
SOURCES = ("amphion",)
SSL_LAYER, SSL_FRAME_RATE = 17, 50
CHECKPOINT = "checkpoints/step_00000000"
STATS_FILE = "ssl_stats.safetensors"
TOKENIZER_DIR = "semantic_tokenizer"


def read_tensors(path: Path) -> dict:
    """All tensors of a safetensors file, on the CPU; a truncated or foreign file is a MetisError."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise MetisError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def read_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt", device="cpu") as f:
            return list(f.keys())
    except Exception as exc:
        raise MetisError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def read_stats(path: Path):
    """``mean`` and ``var`` (float32 numpy [D]) of a stats file: torch (weights only) or safetensors."""
    import numpy as np
    import torch

    try:
        data = (
            read_tensors(path)
            if path.suffix == ".safetensors"
            else torch.load(path, map_location="cpu", weights_only=True)
        )
    except MetisError:
        raise
    except Exception as exc:
        raise MetisError(f"{path}: unreadable stats file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "mean" not in data or "var" not in data:
        raise MetisError(
            f"{path}: a stats file holds 'mean' and 'var'; found "
            f"{sorted(data) if isinstance(data, dict) else type(data).__name__}"
        )
    mean, var = (np.asarray(torch.as_tensor(data[k]).float().numpy()).reshape(-1) for k in ("mean", "var"))
    if mean.shape != var.shape:
        raise MetisError(f"{path}: mean {mean.shape} and var {var.shape} differ in size")
    return mean, var


@dataclass
class Plan:
    """What SRC holds, by layout, and the experiment dirs it becomes."""

    src: Path
    files: dict[str, list[Path]] = field(default_factory=dict)  # layout name -> files
    keys: dict[Path, list[str]] = field(default_factory=dict)  # file -> its tensor names
    stats: Path | None = None
    vocab: Path | None = None

    def add(self, layout: str, path: Path) -> None:
        self.files.setdefault(layout, []).append(path)

    def n_codebooks(self) -> int:
        """Codebooks of the acoustic codes: the S2A model of codebooks 1.. or the codec decoder tells."""
        for layout, pattern in (
            ("s2a", r"token_emb\.(\d+)\.weight"),
            ("acoustic_decoder", r"quantizer\.quantizers\.(\d+)\.codebook\.weight"),
        ):
            for path in self.files.get(layout, []):
                count = len([k for k in self.keys[path] if re.fullmatch(pattern, k)])
                if count > 1:
                    return count
        return PUBLISHED["n_codebooks"]


def scan(src: Path) -> Plan:
    src = Path(src)
    if not src.is_dir():
        raise MetisError(f"{src}: no such folder")
    plan = Plan(src)
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        if "stats" in path.name and path.suffix in (".pt", ".safetensors"):
            plan.stats = path
        elif path.name == "vocab.json":
            plan.vocab = path
        elif path.suffix == ".safetensors":
            plan.keys[path] = read_keys(path)
            plan.add(detect_layout(plan.keys[path], str(path)).name, path)
    if not plan.files:
        raise MetisError(f"{src}: no published checkpoint (*.safetensors) found")
    return plan


def folder_task(path: Path) -> str | None:
    """vc, se or tse for a file in a published metis_<task>/ folder of an adapter task; else None."""
    m = re.fullmatch(r"metis_([a-z]+)", path.parent.name)
    return m.group(1) if m and m.group(1) in PUBLISHED_LORA_RANK else None


def task_of(path: Path, config: dict) -> str:
    """The task of a fine-tuned stage-1 file, from its conditions and folder (metis_<task>/, t2s_model/)."""
    folder = path.parent.name
    text, frames = bool(config["n_phones"]), bool(config["frame_condition_dim"])
    if text and frames:
        return "omni"
    if text:
        return "maskgct_tts" if folder == "t2s_model" else "tts"
    if not config.get("adapter_gate", True):
        return "l2s"
    task = folder_task(path)
    if task:
        return task
    raise MetisError(
        f"{path}: a stage-1 model with a frame adapter, but its folder '{folder}' does not say which task "
        "(expected metis_vc, metis_se or metis_tse)"
    )


def _phone_table(vocab_path: Path, state: dict, where: str):
    """Reorders the published phone embedding (ids of the G2P's vocab.json, padding row 1023) into a
    PhoneVocab (id 0 = padding): returns the vocab and the new table."""
    import torch

    from metis_cli.text.phonemize import PhoneVocab

    table = json.loads(vocab_path.read_text(encoding="utf-8"))
    table = table.get("vocab", table)
    rows = state["phone_emb.weight"]
    bad = {s: i for s, i in table.items() if not 0 <= int(i) < rows.shape[0] - 1}
    if bad:
        raise MetisError(f"{vocab_path}: phone ids outside the {where} table of {rows.shape[0]} rows: {bad}")
    symbols = sorted(table, key=lambda s: int(table[s]))
    vocab = PhoneVocab(symbols)
    order = [rows.shape[0] - 1] + [int(table[s]) for s in vocab.symbols[1:]]
    return vocab, rows[torch.tensor(order)]


def _front_end(dst: Path, ssl_model: str | None) -> dict:
    return {
        "extractor": ssl_model or "w2v-bert-2.0",
        "layer": SSL_LAYER,
        "stats": str((dst / STATS_FILE).resolve()),
        "frame_rate": SSL_FRAME_RATE,
        "dim": 1024,
        "kmeans": str((dst / TOKENIZER_DIR).resolve()),
    }


def _task_config(task: str, model: dict, front_end: dict) -> dict:
    """The config.yaml of a converted fine-tuned model: LoRA already merged, so full weights."""
    text = {"text": {"kind": "espeak", "language": "en"}} if model["n_phones"] else {}
    return {
        "task": task,
        "adaptation": {"mode": "full"},
        "model": model,
        **text,
        "ssl": front_end,
        "data": {"max_utterance_frames": 1500},
    }


def convert_amphion(
    src,
    dst,
    n_heads: int = PUBLISHED["n_heads"],
    ssl_model: str | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    force: bool = False,
) -> dict:
    """Converts every published file under ``src`` into experiment dirs under ``dst`` (see the module doc).
    Returns {output name: description}."""
    from safetensors.torch import save_file

    from metis_cli.codec.model import Codec, CodecConfig
    from metis_cli.config import save_config
    from metis_cli.models.s2a import S2AConfig, S2AModel
    from metis_cli.models.stage1 import Stage1Config, Stage1Model

    plan = scan(Path(src))
    dst = Path(dst).resolve()  # configs name absolute paths inside it
    if dst.exists() and any(dst.iterdir()) and not force:
        raise MetisError(f"{dst}: exists and is not empty; choose a new folder (or --force to replace it)")
    staging = dst.parent / f".{dst.name}.converting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written: dict[str, str] = {}

    def exp_dir(
        name: str, config: dict, weights_name: str, model, source: list[Path], extra: dict | None = None
    ) -> None:
        out = staging / name
        if out.exists():
            raise MetisError(f"two published files become {name}: {', '.join(map(str, source))} and an earlier one")
        (out / CHECKPOINT).mkdir(parents=True)
        save_config(config, out / "config.yaml")
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(out / CHECKPOINT / f"{weights_name}.safetensors"),
        )
        (out / "converted.json").write_text(
            json.dumps({"from": "amphion", "files": [str(p.resolve()) for p in source], **(extra or {})}, indent=2)
            + "\n"
        )
        count = sum(p.numel() for p in model.parameters())
        written[name] = f"{count / 1e6:.1f}M parameters from {', '.join(str(p.relative_to(plan.src)) for p in source)}"
        logger.info("%s: %s", name, written[name])

    front_end = _front_end(dst, ssl_model)
    try:
        if plan.stats is not None:
            from metis_cli.ssl.extract import save_stats

            mean, var = read_stats(plan.stats)
            save_stats(staging / STATS_FILE, mean, var)
            written[STATS_FILE] = f"{mean.shape[0]}-d mean and var from {plan.stats.relative_to(plan.src)}"

        for path in plan.files.get("semantic_codec", []):
            from metis_cli.tokenizer.vq import VQConfig, VQTokenizerModel, save_tokenizer

            config, state = convert_semantic_codec(read_tensors(path))
            model = load_converted(VQTokenizerModel(VQConfig.from_dict(config)), state, str(path))
            ssl = {k: v for k, v in front_end.items() if k != "kmeans"}
            save_tokenizer(model, staging / TOKENIZER_DIR, ssl=ssl, extra={"converted_from": str(path.resolve())})
            written[TOKENIZER_DIR] = (
                f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters from {path.relative_to(plan.src)}"
            )

        encoders, decoders = plan.files.get("acoustic_encoder", []), plan.files.get("acoustic_decoder", [])
        if len(encoders) > 1 or len(decoders) > 1:
            raise MetisError(
                f"several acoustic codec files: {', '.join(map(str, encoders + decoders))}; convert one codec at a time"
            )
        if encoders or decoders:
            if not (encoders and decoders):
                raise MetisError(
                    "the acoustic codec needs both its encoder and its decoder file; found only "
                    f"{(encoders or decoders)[0]}"
                )
            config, state = convert_codec(read_tensors(encoders[0]), read_tensors(decoders[0]))
            model = load_converted(Codec(CodecConfig.from_dict(config)), state, f"{encoders[0]} + {decoders[0]}")
            exp_dir("codec", {"model": config}, "codec", model, [encoders[0], decoders[0]])

        n_codebooks = plan.n_codebooks()
        for path in plan.files.get("s2a", []):
            config, state = convert_s2a(read_tensors(path), n_heads, n_codebooks)
            model = load_converted(S2AModel(S2AConfig.from_dict(config)), state, str(path))
            name = "s2a_coarse" if config["predict_codebooks"][0] == 0 else "s2a_fine"
            exp_dir(name, {"model": config}, "s2a", model, [path])

        base_state, base_path = None, None
        for path in plan.files.get("stage1", []):
            state = read_tensors(path)
            config, converted = convert_stage1(state, n_heads)
            source = [path]
            if not config["n_phones"] and not config["frame_condition_dim"]:
                name, task = "pretrain", None
                base_state, base_path = state, path
            else:
                name = task = task_of(path, config)
            if config["n_phones"]:
                if plan.vocab is None:
                    raise MetisError(
                        f"{path}: a text-prefix model needs the G2P phone table (vocab.json) in {plan.src}"
                    )
                vocab, converted["phone_emb.weight"] = _phone_table(plan.vocab, converted, str(path))
                config["n_phones"] = len(vocab)
                source.append(plan.vocab)
            model = load_converted(Stage1Model(Stage1Config.from_dict(config)), converted, str(path))
            task_config = (
                {"model": config}
                if task is None
                else _task_config("tts" if task == "maskgct_tts" else task, config, front_end)
            )
            exp_dir(name, task_config, "stage1", model, source)
            if config["n_phones"]:
                vocab.save(staging / name / "phones.txt")

        loras, adapters = plan.files.get("lora", []), plan.files.get("adapter", [])
        for lora in loras:
            task = folder_task(lora)
            adapter = [a for a in adapters if a.parent == lora.parent]
            if task is None:
                raise MetisError(
                    f"{lora}: a LoRA file in folder '{lora.parent.name}'; expected metis_vc, metis_se or metis_tse"
                )
            if len(adapter) != 1:
                raise MetisError(
                    f"{lora}: needs exactly one adapter file beside it in {lora.parent}; found {len(adapter)}"
                )
            if base_state is None:
                raise MetisError(
                    f"{lora}: LoRA needs the base stage-1 model (metis_base/model.safetensors) in {plan.src}"
                )
            rank = lora_rank or PUBLISHED_LORA_RANK[task]
            alpha = lora_alpha or 2 * rank
            state = merge_lora(
                merge_adapter(base_state, read_tensors(adapter[0])), read_tensors(lora), rank, alpha, where=str(lora)
            )
            config, converted = convert_stage1(state, n_heads)
            model = load_converted(Stage1Model(Stage1Config.from_dict(config)), converted, str(lora))
            exp_dir(
                task,
                _task_config(task, config, front_end),
                "stage1",
                model,
                [base_path, adapter[0], lora],
                {"lora_rank": rank, "lora_alpha": alpha, "merged": True},
            )
        orphans = [a for a in adapters if not any(l.parent == a.parent for l in loras)]
        if orphans:
            raise MetisError(f"{orphans[0]}: an adapter file without a LoRA file beside it")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if dst.exists():
        shutil.rmtree(dst)
    staging.rename(dst)
    return written
