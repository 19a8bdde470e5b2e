"""Clients that come and go: a live session with ``--web`` (s18 looped, null sink), and rounds of
20 WebSocket clients (overlay and preview, a third of them dropping the connection mid-stream
without a close), printing the session's RSS and fresh frames after each round.

    python scripts/web_clients_rss.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_web import _watch  # noqa: E402
from webtools import Session  # noqa: E402
from web_overlay_cost import CLIP  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    session = Session(CLIP)

    async def crowd(count: int = 20):
        await asyncio.gather(*(_watch(session.port, "overlay" if i % 2 else "preview", 2, leave_abruptly=i % 3 == 0)
                               for i in range(count)))

    try:
        time.sleep(2)
        print(f"before any client: RSS {session.rss_mb():.1f} MB, fresh frames {session.stats()['composited']}")
        for round_ in range(args.rounds):
            asyncio.run(crowd())
            time.sleep(1)
            stats = session.stats()
            print(f"after round {round_ + 1}: RSS {session.rss_mb():.1f} MB, fresh frames {stats['composited']}, "
                  f"clients now {stats['web']['clients']}", flush=True)
    finally:
        print(session.close().strip().splitlines()[-2])


if __name__ == "__main__":
    main()
