"""The one exception type that reaches the user as a single clear line."""


class LivematteError(Exception):
    """A problem the user can fix: bad input, missing weights, no device.

    The command line prints ``livematte: error: <message>`` and exits non-zero,
    without a traceback. Raise it ``from`` the library error that caused it so
    that ``--debug`` can still show the cause.
    """
