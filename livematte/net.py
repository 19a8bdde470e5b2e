"""Fetching user-given URLs: http(s) only, bounded in size and time."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlparse

from .errors import LivematteError

MAX_BYTES = 200 * 1024 * 1024
TIMEOUT_S = 30.0


def is_url(text: str) -> bool:
    return "://" in str(text)


def fetch(url: str, *, expect: tuple[str, ...] = ("image/",), max_bytes: int = MAX_BYTES,
          timeout: float = TIMEOUT_S) -> bytes:
    """GET ``url`` -> its body; the Content-Type must start with one of ``expect``."""
    scheme = urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise LivematteError(f"unsupported URL scheme {scheme!r} in {url}, expected http or https")
    request = urllib.request.Request(url, headers={"User-Agent": "livematte"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            if expect and not kind.startswith(expect):
                raise LivematteError(f"{url} returned {kind}, expected {' or '.join(e + '*' for e in expect)}")
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as e:
        raise LivematteError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise LivematteError(f"cannot fetch {url}: {reason}") from e
    if len(body) > max_bytes:
        raise LivematteError(f"{url} is larger than {max_bytes // (1024 * 1024)} MB")
    return body
