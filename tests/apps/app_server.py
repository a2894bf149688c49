"""A Panel app served by ``panel serve`` on 127.0.0.1 for the browser tests (Debian chromium)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from tests.conftest import ROOT, free_port, wait_http


@contextlib.contextmanager
def served_app(app: str, var: Path, *, cookie_secret: str | None = None,
               env: dict[str, str] | None = None) -> Iterator[str]:
    """``panel serve apps/<app>.py`` with ``SPARK_VAR=var`` (and the gates' login page when
    ``cookie_secret`` is given); yields its base URL, prints the tail of its log when done."""
    port = free_port()
    cmd = [sys.executable, "-m", "panel", "serve", f"apps/{app}.py", "--port", str(port),
           "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"]
    if cookie_secret is not None:
        cmd += ["--auth-module", "spark_research/gates/webauth.py", "--cookie-secret", cookie_secret]
    log_path = var / "panel.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "SPARK_VAR": str(var), **(env or {})})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + ("/login" if cookie_secret is not None else f"/{app}"), timeout=60, proc=proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            print(log_path.read_text()[-3000:])
