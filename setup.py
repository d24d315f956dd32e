"""metis: train and run the Metis speech-generation model end to end.

Dependencies live in requirements/{cpu,gpu}.txt (pinned). What both profiles share is installed with
the package; `pip install -e .[cpu]` or `.[gpu]` adds the torch/faiss build of each profile.
`bash tools/install.sh` does all of it, Debian packages included.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_requirements(name):
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


cpu = read_requirements("cpu.txt")
gpu = read_requirements("gpu.txt")
common = [req for req in cpu if req in gpu]

setup(
    name="metis",
    version="0.1.0",
    description="Metis foundation speech generation: pre-training, fine-tuning, decoding, scoring",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["metis_cli", "metis_cli.*"]),
    package_data={"metis_cli": ["corpus/*.txt"]},
    install_requires=common,
    extras_require={
        "cpu": [req for req in cpu if req not in common],
        "gpu": [req for req in gpu if req not in common],
    },
    entry_points={"console_scripts": ["metis = metis_cli.cli:main"]},
)
