"""Decode dirs: what a decoder writes and a scorer reads.

A decode dir holds ``decode.json`` (``task``, ``data_dir``: the data dir it decoded, ``sample_rate``,
``command``, and whatever else the decoder wants to record) and ``wav.scp`` (utterance id -> output
audio). References come from the data dir: ``text``, ``wav.scp`` (the clean or ground-truth audio),
and per task the input and the speaker reference scp. A file of the same name in the decode dir wins,
so a decoder that picked its own prompts writes its own ``prompt.scp``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from metis_cli.data.datadir import DataDir
from metis_cli.env import command_line
from metis_cli.errors import DataDirError
from metis_cli.task_registry import TASKS

# The tasks a decode dir may record: those with metrics in the task registry (every task but omni, whose
# decode dirs record the mode they decoded).
DECODE_TASKS = tuple(name for name, t in TASKS.items() if t.metrics)


@dataclass
class DecodeDir:
    path: Path
    task: str
    data_dir: Path
    info: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path) -> "DecodeDir":
        path = Path(path)
        info_file = path / "decode.json"
        if not path.is_dir():
            raise DataDirError(f"{path}: decode dir not found")
        if not info_file.is_file():
            raise DataDirError(f"{info_file}: missing; a decode dir records its task and data dir there")
        try:
            info = json.loads(info_file.read_text())
        except json.JSONDecodeError as exc:
            raise DataDirError(f"{info_file}: not valid JSON ({exc})") from None
        task, data_dir = info.get("task"), info.get("data_dir")
        if task not in DECODE_TASKS:
            raise DataDirError(f"{info_file}: task {task!r} is not one of {', '.join(DECODE_TASKS)}")
        if not data_dir:
            raise DataDirError(f"{info_file}: no data_dir")
        data_dir = Path(data_dir)
        if not data_dir.is_absolute():
            data_dir = (path / data_dir).resolve()
        return cls(path, task, data_dir, info)

    @property
    def data(self) -> DataDir:
        return DataDir(self.data_dir)

    @property
    def set_name(self) -> str:
        return self.data_dir.name

    def outputs(self) -> dict[str, str]:
        if not (self.path / "wav.scp").is_file():
            raise DataDirError(f"{self.path / 'wav.scp'}: missing; a decode dir lists its outputs there")
        return DataDir(self.path).read("wav.scp")

    def reference(self, name: str) -> dict[str, str]:
        """A reference table (``text``, ``wav.scp``, ``prompt.scp`` ...): the decode dir's own copy if it
        has one (except wav.scp, which there means the outputs), else the data dir's; {} if neither."""
        own = DataDir(self.path)
        if name != "wav.scp" and own.has(name):
            return own.read(name)
        return self.data.read(name) if self.data.has(name) else {}


def other_speaker_references(decode: "DecodeDir") -> dict[str, str]:
    """utterance -> audio of another speaker than the one the output should sound like: the task's
    ``other_speaker_scp`` (the source speaker of VC, the interfering one of TSE), else the speaker reference of
    another speaker's utterance. A model that follows its prompt scores sim clearly above sim_other."""
    task = TASKS[decode.task]
    if task.other_speaker_scp:
        return decode.reference(task.other_speaker_scp)
    scp = task.speaker_reference_scp
    refs = decode.reference(scp) if scp else {}
    utt2spk = decode.data.utt2spk if decode.data.has("utt2spk") else {}
    utts = sorted(u for u in refs if u in utt2spk)
    others = {}
    for i, utt in enumerate(utts):  # the next utterance (cyclically) of another speaker
        for other in utts[i + 1 :] + utts[:i]:
            if utt2spk[other] != utt2spk[utt]:
                others[utt] = refs[other]
                break
    return others


def write_decode_dir(path, task: str, data_dir, outputs: dict[str, str], **info) -> DecodeDir:
    """Creates a decode dir: decode.json (task, data_dir, command, extra info) and wav.scp."""
    if task not in DECODE_TASKS:
        raise DataDirError(f"task {task!r} is not one of {', '.join(DECODE_TASKS)}")
    path = Path(path)
    dd = DataDir(path)
    dd.write("wav.scp", outputs)
    record = {"task": task, "data_dir": str(Path(data_dir).resolve()), "command": command_line(), **info}
    (path / "decode.json").write_text(json.dumps(record, indent=2) + "\n")
    return DecodeDir.load(path)


def link_decode_dir(data_dir, path, task: str, scp: str = "wav.scp", overwrite: bool = False) -> DecodeDir:
    """A decode dir whose outputs are audio the data dir already has: ``wav.scp`` (the ground truth:
    the ceiling a model is read against) or an input such as ``noisy.scp`` or ``mix.scp`` (the floor).
    An existing decode dir at ``path`` is replaced only with ``overwrite``; another non-empty folder never."""
    import shutil

    data = DataDir(data_dir)
    if not data.has(scp):
        raise DataDirError(f"{data.file(scp)}: not found")
    path = Path(path)
    if path.is_dir() and any(path.iterdir()):
        if not (path / "decode.json").is_file():
            raise DataDirError(f"{path} exists and is not a decode dir; give a new folder")
        if not overwrite:
            raise DataDirError(f"{path} is already a decode dir; pass --overwrite to replace it (its scores go too)")
        shutil.rmtree(path)
    return write_decode_dir(path, task, data_dir, data.read(scp), source=f"{scp} of {data_dir}")
