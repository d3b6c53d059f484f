"""What the lab tests need to run real servers: the tools checked for, and nginx configurations."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

import pytest

# nginx's temporary folders (directive *_temp_path: folder), all pointed into the test's own folder
NGINX_TEMP_PATHS = {"client_body": "body", "proxy": "proxy", "fastcgi": "fastcgi", "uwsgi": "uwsgi", "scgi": "scgi"}


def need(*tools: str) -> None:
    """Fail under CI=true, skip elsewhere, when root or a tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None and not os.path.exists(t)]
    why = "needs root" if os.geteuid() != 0 else (f"needs {', '.join(missing)}" if missing else "")
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def nginx_conf(d: Path, http: str, temp_paths: Iterable[str] = tuple(NGINX_TEMP_PATHS)) -> str:
    """An nginx.conf running in the foreground with its pid, logs and temporary files in `d`.

    `http` is the inside of the http block, indented by four spaces. Tests assert config line
    numbers, so the layout is fixed: `http` starts on line 8 plus one per temporary path set.
    """
    temps = "".join(f"    {t}_temp_path {d}/{NGINX_TEMP_PATHS[t]};\n" for t in temp_paths)
    return ("daemon off;\n"
            "worker_processes 1;\n"
            f"error_log {d}/error.log;\n"
            f"pid {d}/nginx.pid;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "    access_log off;\n"
            f"{temps}{http}"
            "}\n")


def nginx_pass(listen: int, to: str) -> str:
    """An http block's server on port `listen` whose only location passes everything to `to`."""
    return ("    server {\n"
            f"        listen {listen};\n"
            f"        location / {{ proxy_pass http://{to}; }}\n"
            "    }\n")
