"""A learned VQ SSL tokenizer (the published "semantic codec"): the alternative to k-means.

    features [B, T, input_dim] --encoder--> [B, input_dim, T] --factorised VQ--> codes [B, T]
    codes --VQ lookup--> [B, input_dim, T] --decoder--> reconstruction [B, T, input_dim]

Encoder and decoder are each a ConvNeXt backbone over time followed by a per-frame linear projection
back to ``input_dim``; the quantiser is one cosine-lookup codebook behind 1x1 projections (the codec's
FactorizedVQ). Trained with L1 reconstruction of the features plus the codebook and commitment losses.
``conf/full/vq.yaml`` gives the published sizes (w2v-BERT 2.0 layer 17, 1024 -> 384 x 12 blocks,
8192 x 8 codes), ``conf/mini/vq.yaml`` a small one for the embedded corpus on a CPU.

``metis train-vq`` writes a tokenizer dir, ``<exp_dir>/tokenizer`` (``vq.safetensors`` + ``vq.json``),
which ``metis tokenize`` reads like a k-means dir; ``VQTokenizer`` has ``KMeansModel``'s interface.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metis_cli.checkpoint import load_weights, write_model_dir
from metis_cli.codec.model import ConvNeXtBackbone, FactorizedVQ
from metis_cli.config import check_keys, read_exp_config
from metis_cli.data.arrays import ArrayStore
from metis_cli.errors import MetisError
from metis_cli.models.transformer import count_parameters
from metis_cli.tokenizer.kmeans import FeatureDimensionError

logger = logging.getLogger(__name__)
SECTIONS = ("model", "data", "optim", "train", "features")
MODEL_NAME = "vq"  # checkpoints/step_N/vq.safetensors
TOKENIZER_DIR = "tokenizer"  # <exp_dir>/tokenizer: what `metis tokenize --model` reads


@dataclass
class VQConfig:
    input_dim: int = 1024  # the SSL features' dimension (empty in a config: read from the features)
    dim: int = 384
    intermediate_dim: int = 2048
    n_layers: int = 12
    codebook_size: int = 8192
    codebook_dim: int = 8
    commitment_weight: float = 0.15
    codebook_weight: float = 1.0
    # Dead-code restarts, as in the codec's QuantizerConfig: 0 = off.
    dead_code_threshold: float = 0.0
    restart_every: int = 50

    @classmethod
    def from_dict(cls, d: dict) -> "VQConfig":
        check_keys(d, cls, "vq model config")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class ConvNeXtProjection(nn.Module):
    """ConvNeXt backbone over time, then a linear map of each frame back to ``input_dim``:
    [B, input_dim, T] -> [B, input_dim, T]."""

    def __init__(self, input_dim: int, dim: int, intermediate_dim: int, n_layers: int):
        super().__init__()
        self.backbone = ConvNeXtBackbone(input_dim, dim, intermediate_dim, n_layers)
        self.proj = nn.Linear(dim, input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x).transpose(1, 2)).transpose(1, 2)


class VQTokenizerModel(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvNeXtProjection(cfg.input_dim, cfg.dim, cfg.intermediate_dim, cfg.n_layers)
        self.quantizer = FactorizedVQ(
            cfg.input_dim, cfg.codebook_size, cfg.codebook_dim, cfg.dead_code_threshold, cfg.restart_every
        )
        self.decoder = ConvNeXtProjection(cfg.input_dim, cfg.dim, cfg.intermediate_dim, cfg.n_layers)

    def forward(self, features: torch.Tensor) -> dict:
        """features [B, T, input_dim] -> reconstruction [B, T, input_dim], codes [B, T], the VQ losses."""
        quantized, codes, commitment, codebook = self.quantizer(self.encoder(features.transpose(1, 2)))
        return {
            "reconstruction": self.decoder(quantized).transpose(1, 2),
            "codes": codes,
            "commitment_loss": commitment.mean(),
            "codebook_loss": codebook.mean(),
        }

    @torch.no_grad()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, T, input_dim] -> codes [B, T] (int64)."""
        return self.quantizer(self.encoder(features.transpose(1, 2)))[1]


def perplexity(counts: torch.Tensor) -> float:
    """2^entropy of a code histogram: how many codes are in effective use."""
    from metis_cli.data.batching import entropy_bits

    return 2 ** entropy_bits(counts.cpu().numpy())


def feature_dim(store: ArrayStore) -> int:
    """The one feature dimension of a store (from its index; no array is read)."""
    dims: dict[int, str] = {}
    for utt, entry in store.entries.items():
        if len(entry.shape) != 2:
            raise MetisError(
                f"{store.dir}: utterance '{utt}' has shape {entry.shape}, not [frames, dim]; is this a feature store?"
            )
        dims.setdefault(entry.shape[1], utt)
    if not dims:
        raise MetisError(f"{store.dir}: no features")
    if len(dims) > 1:
        raise MetisError(
            f"{store.dir}: features of several dimensions ({', '.join(f'{d} in {u!r}' for d, u in dims.items())})"
        )
    return next(iter(dims))


def _training_summary(exp_dir: Path, step: int | None) -> dict:
    """The last logged training metrics and validation at or before ``step`` (from metrics.jsonl)."""
    summary: dict = {"step": step}
    path = exp_dir / "metrics.jsonl"
    if not path.is_file():
        return summary
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if step is not None and record.get("step", 0) > step:
            continue
        if "total" in record:
            summary["train"] = {k: v for k, v in record.items() if k != "step"}
        elif any(k.startswith("val_") for k in record):
            summary["validation"] = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
    return summary


def save_tokenizer(model: VQTokenizerModel, out_dir, ssl: dict | None = None, extra: dict | None = None) -> dict:
    """Writes a tokenizer dir: ``vq.safetensors`` (the weights) and ``vq.json`` (``n_clusters``, ``dim``,
    the model config, the SSL front end that made the features, and ``extra``). Returns vq.json's content."""
    cfg = model.cfg
    info = {
        "tokenizer": "vq",
        "n_clusters": cfg.codebook_size,
        "dim": cfg.input_dim,
        "model": cfg.to_dict(),
        "parameters": count_parameters(model),
        "ssl": ssl or {},
        **(extra or {}),
    }
    return write_model_dir(out_dir, "vq", model, info)


def export_vq(exp_dir, out_dir=None, checkpoint=None) -> dict:
    """The tokenizer dir (default ``<exp_dir>/tokenizer``) of a ``train-vq`` experiment: the weights of
    ``checkpoint`` (default the newest readable one), the SSL front end from the training features'
    ssl.json (as ``metis kmeans`` records it) and a training summary. Returns vq.json's content."""
    exp_dir = Path(exp_dir)
    config = read_exp_config(exp_dir)
    model = VQTokenizerModel(VQConfig.from_dict(config["model"]))
    used = load_weights(exp_dir, MODEL_NAME, model, checkpoint, what="VQ tokenizer")
    feats = (config.get("features") or {}).get("train")
    ssl_json = Path(feats) / "ssl.json" if feats else None
    ssl = json.loads(ssl_json.read_text()) if ssl_json is not None and ssl_json.is_file() else {}
    step = int(used.name.split("_")[-1]) if used.name.startswith("step_") else None
    training = {
        "exp_dir": str(exp_dir.resolve()),
        "checkpoint": str(used.resolve()),
        **_training_summary(exp_dir, step),
    }
    return save_tokenizer(
        model,
        out_dir if out_dir is not None else exp_dir / TOKENIZER_DIR,
        ssl,
        {"features": feats, "training": training},
    )


class VQTokenizer:
    """A tokenizer dir from ``export_vq``; ``assign`` gives each frame's code, like KMeansModel."""

    kind = "vq"  # the key of TOKENIZER_FILES

    def __init__(self, model_dir, device: str | None = None):
        from safetensors.torch import load_file

        self.dir = Path(model_dir)
        weights, config = self.dir / "vq.safetensors", self.dir / "vq.json"
        for path in (weights, config):
            if not path.is_file():
                raise MetisError(
                    f"{path}: not found; train a VQ tokenizer with `metis train-vq` (it writes "
                    f"<exp_dir>/{TOKENIZER_DIR})"
                )
        self.config = json.loads(config.read_text())
        self.cfg = VQConfig.from_dict(self.config.get("model", {}))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = VQTokenizerModel(self.cfg)
        try:
            self.model.load_state_dict(load_file(str(weights)))
        except RuntimeError as exc:
            raise MetisError(f"{weights}: does not match the model in {config}: {exc}") from None
        self.model.to(self.device).eval()

    @property
    def n_clusters(self) -> int:
        return self.cfg.codebook_size

    def assign(self, features: np.ndarray, utt: str | None = None) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.cfg.input_dim:
            where = f"utterance '{utt}': " if utt else ""
            raise FeatureDimensionError(
                f"{where}features of shape {features.shape} do not match the VQ tokenizer {self.dir} "
                f"({self.cfg.input_dim} dims)"
            )
        dtype = np.int16 if self.n_clusters <= 32767 else np.int32
        if len(features) == 0:
            return np.zeros(0, dtype=dtype)
        codes = self.model.encode(torch.from_numpy(features)[None].to(self.device))[0]
        return codes.cpu().numpy().astype(dtype)
