"""senone: Kaldi-style hybrid DNN-HMM recipes in Python.

The library holds everything a stage does; ``steps/`` are thin command-line wrappers that the
Snakefile calls, so every stage can also be run from a notebook.
"""

__version__ = "0.1.0"


class SenoneError(RuntimeError):
    """An error caused by input or configuration, with a message that names the file and the fix.

    Steps catch it and print the message as one line (no traceback), because the user can act on
    it without reading code.
    """
