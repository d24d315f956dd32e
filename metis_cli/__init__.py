"""metis: a toolkit that trains and runs the Metis speech-generation model end to end.

Library first: every stage is a function in a sub-module (``metis_cli.audio``, ``metis_cli.data``,
``metis_cli.corpus``, ...); ``metis_cli.cli`` only wires them into the ``metis`` command.
"""

__version__ = "0.1.0"
