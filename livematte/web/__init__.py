"""A local web page beside a live session (``livematte live --web [HOST:]PORT``): a control page
with the live preview, and a transparent overlay for an OBS Browser Source.

:mod:`.control` holds what the page changes and the newest picture; :mod:`.server` serves the
pages, the API and the frame stream on their own threads; :mod:`.encoder` encodes the streamed
frames on a thread of its own.
"""
