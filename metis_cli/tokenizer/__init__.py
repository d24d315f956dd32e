"""Stage 2: the SSL tokenizer (k-means over SSL features, or a learned VQ), token assignment and its
quality report.

A tokenizer dir holds either ``kmeans.safetensors`` + ``kmeans.json`` (``metis kmeans``) or
``vq.safetensors`` + ``vq.json`` (``metis train-vq``); ``load_tokenizer`` tells them apart. Both
loaded models have ``assign(features [T, D], utt) -> tokens [T]``, ``n_clusters``, ``config``, ``dir``, ``kind``.
"""

from __future__ import annotations

from pathlib import Path

from metis_cli.errors import MetisError

# The files of each kind of tokenizer dir; the first one decides the kind.
TOKENIZER_FILES = {"kmeans": ("kmeans.safetensors", "kmeans.json"), "vq": ("vq.safetensors", "vq.json")}
TOKENIZER_KINDS = ("auto", *TOKENIZER_FILES)


def tokenizer_kind(model_dir) -> str:
    """'kmeans' or 'vq', from the weights file ``model_dir`` holds."""
    model_dir = Path(model_dir)
    found = [kind for kind, files in TOKENIZER_FILES.items() if (model_dir / files[0]).is_file()]
    if not found:
        raise MetisError(
            f"{model_dir}: not a tokenizer dir: it holds neither kmeans.safetensors (from `metis kmeans`) "
            "nor vq.safetensors (from `metis train-vq`, in <exp_dir>/tokenizer)"
        )
    if len(found) > 1:
        raise MetisError(f"{model_dir}: holds both a k-means and a VQ tokenizer; keep one of them per dir")
    return found[0]


def load_tokenizer(model_dir, kind: str = "auto"):
    """The KMeansModel or VQTokenizer in ``model_dir``; ``kind`` other than 'auto' must match it."""
    if kind not in TOKENIZER_KINDS:
        raise MetisError(f"unknown tokenizer '{kind}'; choose from {', '.join(TOKENIZER_KINDS)}")
    found = tokenizer_kind(model_dir)
    if kind not in ("auto", found):
        raise MetisError(
            f"{model_dir} holds a {found} tokenizer ({TOKENIZER_FILES[found][0]}), not a {kind} one; "
            f"use --tokenizer {found} (or auto), or point --model at a {kind} tokenizer dir"
        )
    if found == "vq":
        from metis_cli.tokenizer.vq import VQTokenizer

        return VQTokenizer(model_dir)
    from metis_cli.tokenizer.kmeans import KMeansModel

    return KMeansModel(model_dir)
