"""Errors a user can act on: each message is one line naming the file, key or option.

Example:
    >>> from lsnet_keras.errors import LSNetError
    >>> str(LSNetError("model.keras: file not found"))
    'model.keras: file not found'
"""


class LSNetError(ValueError):
    """Base of the library's user-facing errors; the CLI prints them as one line."""
