"""Media files in and out, one module per job.

- :mod:`.opening`: an input file or http(s) URL opened for PyAV, every failure one line naming it.
- :mod:`.reading`: :func:`~.reading.probe`, :class:`~.reading.VideoInfo`, :class:`~.reading.VideoReader`:
  any video FFmpeg can demux -> ``uint8 [H, W, 3]`` BGR upright frames with pts in seconds.
- :mod:`.audio`: audio passthrough. :class:`~.audio.AudioFeed` holds an input's compressed audio
  packets (from the reader's own demux, or from a file); :class:`~.audio.AudioCarrier` moves them
  into an output, copied or re-encoded, interleaved with the video.
- :mod:`.writing`: :class:`~.writing.VideoWriter` (composites, optionally transparent, with audio)
  and :class:`~.writing.AlphaWriter` (lossless mattes).
- :mod:`.formats`: the output kinds (which one a path asks for), each one's container, codec and
  audio rules, and the encoder settings.
- :mod:`.atomic`: output written under a temporary name and renamed into place when complete
  (:class:`~.atomic.AtomicOutput`, and :func:`~.atomic.write_atomically` for a whole file in memory).
- :mod:`.clock`: seconds -> strictly increasing encoder ticks.
- :mod:`.readback`: outputs read back (mattes, RGBA frames), for tests and scripts.

Why modules and no re-exports here: each job can be read, and imported, on its own. In
particular :mod:`.atomic`, :mod:`.clock` and :mod:`.formats` import neither PyAV nor OpenCV
(slow to import, see the README's measurements), so code that only writes a file safely (stats,
weights, bench) stays light, code that only names an output kind (the parser, the config) loads
no PyAV, and importing this package itself imports nothing heavy. :mod:`.opening` is its own module
because both the reader and the audio feed open inputs, and the reader makes audio feeds:
with opening in either of them the two would import each other.
"""

from __future__ import annotations

import os

PathLike = str | os.PathLike
