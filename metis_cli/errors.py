"""Errors a user can act on: the CLI prints their message (no traceback) and exits with status 1."""


class MetisError(Exception):
    """Base class; the message must name the file, the utterance id and, where possible, the fix."""


class AudioError(MetisError):
    """Audio that is missing, unreadable, empty or otherwise unusable."""


class DataDirError(MetisError):
    """A Kaldi data dir (or one of its files) that cannot be used as it is."""


class CorpusError(MetisError):
    """The embedded corpus cannot be built (e.g. a speech engine or voice is missing)."""
