"""JupyterLab server extension: the Lab server runs its own environment's commands.

jupyter-panel-proxy (the "Panel Launcher" tile) starts ``panel serve`` by name and offers no
setting for the command, so the server needs its environment's scripts directory on
``PATH``. Whoever starts ``.venv/bin/jupyter lab`` without activating the venv does not
have it there, and the launcher answered HTTP 500 (``FileNotFoundError: 'panel'``). Loaded
into the server, this extension puts the server interpreter's scripts directory first on
the server's ``PATH``, as activating the venv would: the launcher then starts the venv's
``panel``, and Lab terminals find the venv's ``python`` and ``spark``.

``make lab`` (and Binder's ``postBuild``) enables it in the environment, once for every
later ``jupyter lab`` of that environment::

    .venv/bin/python -m spark_research.platform.lab   # writes .venv/etc/jupyter/jupyter_server_config.d/spark_research.platform.lab.json
    .venv/bin/jupyter lab notebooks/                  # the Panel Launcher serves apps/*.py
"""
from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

EXTENSION = "spark_research.platform.lab"  # not __name__: "__main__" under python -m


def scripts_first(path: str, scripts_dir: str) -> str:
    """``path`` (a ``PATH`` value) with ``scripts_dir`` first and nowhere else.

    >>> scripts_first("/usr/bin:/venv/bin:/bin", "/venv/bin")
    '/venv/bin:/usr/bin:/bin'
    """
    rest = [d for d in path.split(os.pathsep) if d and os.path.normpath(d) != os.path.normpath(scripts_dir)]
    return os.pathsep.join([scripts_dir, *rest])


def enable(prefix: str | Path = sys.prefix) -> Path:
    """Enable the extension for every Jupyter server of the environment at ``prefix``; returns the config file.

    ``jupyter server extension enable`` only toggles extensions a package already declared in
    the environment's ``etc/jupyter``, so this writes that declaration (idempotent).

    >>> import tempfile
    >>> enable(tempfile.mkdtemp()).name
    'spark_research.platform.lab.json'
    """
    path = Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / f"{EXTENSION}.json"
    text = json.dumps({"ServerApp": {"jpserver_extensions": {EXTENSION: True}}}, indent=2) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    # First, not merely present: a pyenv or conda shim named `panel` earlier on PATH would
    # start another environment's Panel, one without this project.
    scripts_dir = sysconfig.get_path("scripts")
    os.environ["PATH"] = scripts_first(os.environ.get("PATH") or os.defpath, scripts_dir)
    serverapp.log.info("spark_research: %s is first on the PATH of the processes this server starts", scripts_dir)


if __name__ == "__main__":
    print(f"enabled {EXTENSION}: {enable()}")
