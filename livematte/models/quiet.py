"""Start-up notices that native runtimes print straight to the process's stderr, moved to the debug log."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)


@contextlib.contextmanager
def notices_to_debug_log(notices: Sequence[str], source: str) -> Iterator[None]:
    """Hold file descriptor 2 in a file while a native library starts; pass on to stderr every
    line but those holding one of ``notices``, which go to the debug log as ``source: line``.

    For use before any pipeline thread starts, so that nothing else writes to stderr meanwhile.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", "replace").splitlines(keepends=True):
                if any(notice in line for notice in notices):
                    log.debug("%s: %s", source, line.strip())
                else:
                    sys.stderr.write(line)
            sys.stderr.flush()
