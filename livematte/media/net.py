"""Fetching user-given URLs: http(s) only, bounded in size and time."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlparse

from ..errors import LivematteError

MAX_BYTES = 200 * 1024 * 1024
TIMEOUT_S = 30.0


def is_url(text: str) -> bool:
    return "://" in str(text)


def check_scheme(url: str) -> None:
    """LivematteError unless ``url`` is a well-formed http(s) URL."""
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError as e:  # e.g. an unclosed [IPv6] host
        raise LivematteError(f"bad URL {url}: {e}") from e
    if scheme not in ("http", "https"):
        raise LivematteError(f"unsupported URL scheme {scheme!r} in {url}, expected http or https")


def fetch(url: str, *, expect: tuple[str, ...] = ("image/",), max_bytes: int = MAX_BYTES,
          timeout: float = TIMEOUT_S) -> bytes:
    """GET ``url`` -> its body; the Content-Type must start with one of ``expect``."""
    check_scheme(url)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "livematte"})
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
    except ValueError as e:  # http.client.InvalidURL and friends: a port that is not a number...
        raise LivematteError(f"bad URL {url}: {e}") from e
    if len(body) > max_bytes:
        raise LivematteError(f"{url} is larger than the {max_bytes:,} bytes allowed")
    return body
