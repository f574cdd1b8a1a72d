"""User-facing errors.

Anything a user can cause (a missing file, a bad flag value, an unknown model) raises
`LRMError`. The CLI prints its message as one line on stderr and exits with code 2; library
callers catch it like any exception. Bugs stay ordinary exceptions.
"""


class LRMError(Exception):
    """An error caused by user input, with a message fit for one line on stderr."""


class CheckpointError(LRMError):
    """A checkpoint is missing, corrupt, or does not match the model (names the keys)."""


class EmptySurfaceError(LRMError):
    """Marching cubes found no iso-surface crossing; the message suggests a threshold."""
