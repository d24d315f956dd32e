"""The package's layers point one way: a module imports only modules of its own layer or of a layer below
(function-level imports included), and no two packages import each other. Models and inference never import
training; configs and experiment-dir access sit at the bottom.

    cli        metis_cli/cli/ (the Typer app, one module per command group: they only wire) and __main__.py
    top        train (every trainer), infer (decoding), score, convert
    tasks      tasks (conditions, augmentation, adaptation)
    models     models, ssl, codec, tokenizer
    data       data (data dirs, arrays, shards, batching), corpus
    base       task_registry, errors, files, log, env, config, checkpoint, dsp, audio, video, text, watermark
"""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "metis_cli"
LAYERS = {
    "base": (
        "__init__",
        "task_registry",
        "errors",
        "files",
        "log",
        "env",
        "config",
        "checkpoint",
        "dsp",
        "audio",
        "video",
        "text",
        "watermark",
    ),
    "data": ("data", "corpus"),
    "models": ("models", "ssl", "codec", "tokenizer"),
    "tasks": ("tasks",),
    "top": ("train", "infer", "score", "convert"),
    "cli": ("cli", "__main__"),
}
ORDER = list(LAYERS)
# The one import allowed to point up: the package's lazy re-export of its Python API (``from metis_cli import
# Metis``, PEP 562 ``__getattr__``), which runs only when a user asks for that name.
FACADE = {("metis_cli", "metis_cli.infer.api")}


def unit_of(module: str) -> str:
    """metis_cli.a.b -> 'a' (the top-level module or package)."""
    parts = module.split(".")
    if len(parts) == 1:  # the package's own __init__.py
        return "__init__"
    # ``from metis_cli import __version__``: a name of the package itself, at the bottom
    return parts[1] if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file() else "__init__"


def layer_of(unit: str) -> str:
    return next(name for name, units in LAYERS.items() if unit in units)


def imports() -> list[tuple[str, str]]:
    """(importing module, imported module) for every metis_cli import of the package."""
    out = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [base] if base != "metis_cli" else [f"metis_cli.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            out += [(module, t) for t in targets if t.startswith("metis_cli.") and (module, t) not in FACADE]
    return out


def test_every_unit_has_a_layer_and_every_package_an_init():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    units.discard("__pycache__")
    known = {u for group in LAYERS.values() for u in group}
    assert units <= known, f"give these a layer in tests/test_layers.py: {sorted(units - known)}"
    for folder in PACKAGE.rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").is_file(), f"{folder} has no __init__.py: setup.py would not ship it"


def test_no_import_runs_up_a_layer():
    upward = []
    for src, dst in imports():
        a, b = layer_of(unit_of(src)), layer_of(unit_of(dst))
        if ORDER.index(b) > ORDER.index(a):
            upward.append(f"{src} ({a}) imports {dst} ({b})")
    assert not upward, "\n".join(upward)


def test_no_two_packages_import_each_other():
    edges = defaultdict(set)
    for src, dst in imports():
        a, b = unit_of(src), unit_of(dst)
        if a != b:
            edges[a].add(b)
    both = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())})
    assert not both, f"packages importing each other: {both}"


def test_models_and_inference_never_import_training():
    offending = [
        f"{src} imports {dst}"
        for src, dst in imports()
        if unit_of(src) in ("models", "infer", "codec", "ssl", "tokenizer") and unit_of(dst) == "train"
    ]
    assert not offending, "\n".join(offending)
