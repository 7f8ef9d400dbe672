"""What the reliability tests share: the server process they replay against, a session on it, hang guards."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

SERVER_START_S = 120.0  # hang guard: torch import and the warm-up on a loaded 2-core machine
HANG_GUARD = 60.0  # seconds for any one reply


@dataclass
class ServerProcess:
    url: str
    ws: str
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Session:
    http: httpx.Client  # carries the session's cookie and the page's Origin
    token: str  # the same session, for /ws?session=
