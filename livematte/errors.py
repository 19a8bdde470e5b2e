"""The one exception type that reaches the user as a single clear line."""


def error_line(error: BaseException | None, *, last: bool = False) -> str:
    """A library's many-line error text -> one line (the first, or the ``last``), at most 300 characters.

    onnxruntime and OpenVINO put the specific cause on their last line; TensorFlow,
    protobuf and ModelScope on their first.
    """
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return (lines[-1] if last else lines[0])[:300]


class LivematteError(Exception):
    """A problem the user can fix: bad input, missing weights, no device.

    The command line prints ``livematte: error: <message>`` and exits non-zero,
    without a traceback. Raise it ``from`` the library error that caused it so
    that ``--debug`` can still show the cause.
    """
