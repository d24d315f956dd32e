"""metis: a toolkit that trains and runs the Metis speech-generation model end to end.

Library first: every stage is a function in a sub-module (``metis_cli.audio``, ``metis_cli.data``,
``metis_cli.corpus``, ...); ``metis_cli.cli`` only wires them into the ``metis`` command. The Python API of a
fine-tuned model is ``metis_cli.Metis`` (docs/api.md).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``from metis_cli import Metis``: the Python API (metis_cli/infer/api.py), imported on first use so that
    importing the package (and the CLI's --help) does not load torch."""
    if name in ("Metis", "Audio"):
        from metis_cli.infer.api import Audio, Metis

        return {"Metis": Metis, "Audio": Audio}[name]
    raise AttributeError(f"module 'metis_cli' has no attribute {name!r}")
