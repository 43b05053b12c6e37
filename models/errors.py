"""User-facing errors.

Anything raised as a ComoliveError is shown to the user as one readable line (no traceback) by
main.py; every other exception is a bug. It lives in the lowest layer so every layer can raise it.
"""


class ComoliveError(Exception):
    """A problem the user can act on: bad input, missing model, unwritable path, device trouble."""


class AudioInputError(ComoliveError):
    """An audio file that cannot be read or holds no usable signal."""


class ModelFileError(ComoliveError):
    """A model/checkpoint file that is missing, truncated or corrupted."""


class AudioInputWarning(UserWarning):
    """Audio that is used, but not as the user may think (e.g. a file cut short): main.py prints one line."""
