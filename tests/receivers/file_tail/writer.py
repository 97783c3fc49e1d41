"""A log writer for the rotation tests: appends N numbered lines to app.log at speed, rotating it.

Usage: python writer.py DIR N ROTATE_EVERY [PAUSE_MS]

With PAUSE_MS it sleeps that long every 50 lines, so reading and writing interleave.

Every ROTATE_EVERY lines it rotates, alternately by rename (app.log -> app.log.K, a new app.log)
and by copytruncate (copy to app.log.K, truncate app.log in place, keep writing to it), like
logrotate. Lines are written whole, a few per write, so none is ever half on disk for long.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path


def main() -> None:
    folder, total, every = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    pause = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0
    live = folder / "app.log"
    fd = os.open(live, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rotation = 0
    pending: list[str] = []
    for seq in range(1, total + 1):
        pending.append(f'{{"seq": {seq}, "message": "line {seq:07d} of the rotation test"}}\n')
        if len(pending) == 8 or seq % every == 0 or seq == total:
            os.write(fd, "".join(pending).encode())
            pending.clear()
        if pause and seq % 50 == 0:
            time.sleep(pause)
        if seq % every == 0 and seq < total:
            rotation += 1
            target = folder / f"app.log.{rotation}"
            if rotation % 2:
                os.close(fd)
                live.rename(target)
                fd = os.open(live, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            else:
                shutil.copyfile(live, target)
                os.ftruncate(fd, 0)
    os.close(fd)


if __name__ == "__main__":
    main()
