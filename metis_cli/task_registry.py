"""The one table of what each task is: what it reads, how it is decoded and how its output is scored.

Fine-tuning (``metis finetune --task``), decoding (``metis decode``, ``metis synth``), the decode dirs that
``metis score`` reads and the recipes (``metis tasks NAME --field F``) all look a task up here, so a task
is added or changed in one place. Besides the five tasks of Metis and Omni (one model, the four audio/text
tasks as its modes), two decode-dir kinds are scored the same way without being fine-tuned: ``resynth``
(S2A and codec resynthesis of ground-truth SSL tokens) and ``generate`` (free continuation by the
unconditional pre-trained model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metis_cli.errors import MetisError


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    fine_tuned: bool = True  # `metis finetune --task` makes a model of it
    # the condition: the data dir's scp, what a user calls it, `metis synth`'s option for it
    condition_scp: str | None = None
    condition_name: str | None = None
    condition_option: str | None = None
    # the voice to speak with, from the target speaker: scp and name
    prompt_scp: str | None = None
    prompt_name: str | None = None
    text: bool = False  # reads the transcripts (the text prefix)
    video: bool = False  # reads mouth videos (video.scp) or pre-computed visual features (feats.scp)
    modes: tuple[str, ...] = ()  # Omni: the tasks one model decodes
    stage1_defaults: dict = field(default_factory=dict)  # the published stage-1 decoding of the task
    # scoring: the audio heard next to the output, the unprocessed input that is the task's floor, the
    # speaker reference of `sim` and of `sim_other` (None: another speaker's reference), the metrics
    input_scp: str | None = None
    floor_scp: str | None = None
    speaker_reference_scp: str | None = None
    other_speaker_scp: str | None = None
    metrics: tuple[str, ...] = ()

    @property
    def synth_options(self) -> tuple[str, ...]:
        """`metis synth`'s input options this task takes (Omni: those of its modes, and text-guided vc/se/tse)."""
        if self.modes:
            return tuple(dict.fromkeys(o for m in self.modes for o in TASKS[m].synth_options + ("text", "ref_text")))
        options = [self.condition_option] if self.condition_option else []
        if self.prompt_scp:
            options.append("ref")
        if self.text:
            options += ["text", "ref_text", "duration"]
        return tuple(options)


_SPEECH = ("wer", "sim", "sim_other", "dnsmos")
# MaskGCT's text-to-semantic decoding: TTS's, and the pre-trained model's free continuation (`generate`)
_T2S_DECODING = {"steps": 25, "cfg_scale": 2.5, "temperature": 0.9}
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "tts",
            "zero-shot text to speech: the text spoken in the voice of a prompt",
            prompt_scp="prompt.scp",
            prompt_name="prompt",
            text=True,
            stage1_defaults=_T2S_DECODING,
            input_scp="prompt.scp",
            speaker_reference_scp="prompt.scp",
            metrics=_SPEECH,
        ),
        Task(
            "vc",
            "voice conversion: the source's words in the voice of a reference",
            condition_scp="src.scp",
            condition_name="source",
            condition_option="src",
            prompt_scp="ref.scp",
            prompt_name="reference",
            stage1_defaults={"steps": 20, "cfg_scale": 1.0, "temperature": 0.9},
            input_scp="src.scp",
            floor_scp="src.scp",
            speaker_reference_scp="ref.scp",
            other_speaker_scp="src.scp",
            metrics=_SPEECH,
        ),
        Task(
            "se",
            "speech enhancement: the clean speech of a noisy, reverberant recording",
            condition_scp="noisy.scp",
            condition_name="noisy speech",
            condition_option="noisy",
            stage1_defaults={"steps": 10, "cfg_scale": 0.0, "temperature": 0.9},
            input_scp="noisy.scp",
            floor_scp="noisy.scp",
            metrics=("wer", "dnsmos", "pesq", "stoi", "sisdr"),
        ),
        Task(
            "tse",
            "target speaker extraction: the enrolled speaker's speech out of a mixture",
            condition_scp="mix.scp",
            condition_name="mixture",
            condition_option="mix",
            prompt_scp="enroll.scp",
            prompt_name="enrollment",
            stage1_defaults={"steps": 10, "cfg_scale": 0.0, "temperature": 0.9},
            input_scp="mix.scp",
            floor_scp="mix.scp",
            speaker_reference_scp="enroll.scp",
            other_speaker_scp="interferer.scp",
            metrics=(*_SPEECH, "pesq", "stoi", "sisdr"),
        ),
        Task(
            "l2s",
            "lip to speech: speech from a mouth video, in the voice of a prompt",
            condition_scp="video.scp",
            condition_name="video",
            condition_option="video",
            prompt_scp="prompt.scp",
            prompt_name="reference",
            video=True,
            stage1_defaults={"steps": 20, "cfg_scale": 0.0, "temperature": 0.9},
            speaker_reference_scp="prompt.scp",
            metrics=(*_SPEECH, "stoi"),
        ),
        Task(
            "omni",
            "one model for tts, vc, se and tse (--mode), text-guided vc/se/tse too",
            text=True,
            modes=("tts", "vc", "se", "tse"),
        ),
        Task(
            "resynth",
            "S2A and codec resynthesis of ground-truth SSL tokens (metis resynth)",
            fine_tuned=False,
            speaker_reference_scp="wav.scp",
            # the clean original is the reference: PESQ, STOI, SI-SDR and MCD say how it sounds. DNSMOS, the
            # costliest metric (74 s a dir of the mini main job), is kept for outputs without a reference.
            metrics=("wer", "sim", "sim_other", "pesq", "stoi", "sisdr", "mcd"),
        ),
        Task(
            "generate",
            "free continuation of a prompt by the pre-trained model (metis resynth --stage1)",
            fine_tuned=False,
            stage1_defaults=_T2S_DECODING,
            input_scp="prompt.scp",
            speaker_reference_scp="prompt.scp",
            # the words are the model's own: the voice counts. Its sound is the S2A's and the codec's, heard on
            # resynth dirs; DNSMOS here cost 70 s of the mini main job and differed from s2a_resynth's by 0.07.
            metrics=("sim", "sim_other"),
        ),
    )
}
FINE_TUNED = tuple(name for name, t in TASKS.items() if t.fine_tuned)


def get_task(name: str | None, fine_tuned: bool = False) -> Task:
    """The task called ``name``; ``fine_tuned``: only tasks `metis finetune` makes models of."""
    names = FINE_TUNED if fine_tuned else tuple(TASKS)
    if name not in names:
        raise MetisError(f"unknown task '{name}'; choose from {', '.join(names)}")
    return TASKS[name]
