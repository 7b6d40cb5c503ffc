"""User-facing errors.

Every mistake a user can make (a bad path, an out-of-range setting, a damaged bundle)
raises :class:`StudioError` with one sentence that says what went wrong and what to do.
The CLI prints it on one line and exits non-zero; the web UI turns it into ``gr.Error``.
"""


class StudioError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole message."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`StudioError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise StudioError(message)
