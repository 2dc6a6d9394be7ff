"""Run cactus-client-notifications (the notification sink) on 127.0.0.1 on a free port.

Run with the sink's own venv (run.py does): its cactus-schema<1 pin conflicts with
cactus-client's. The sink reads its public URL from SERVER_URL when its module is imported,
so the socket is bound first and the URL set from the port it got; the port is then written
to ``--ready-file``.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    os.environ["APP_PORT"] = str(port)
    os.environ["SERVER_URL"] = f"http://127.0.0.1:{port}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    from aiohttp import web
    from cactus_client_notifications.server.main import app

    async def announce(_: web.Application) -> None:
        args.ready_file.write_text(f"{port}\n")

    app.on_startup.append(announce)
    web.run_app(app, sock=sock, print=None)


if __name__ == "__main__":
    main()
