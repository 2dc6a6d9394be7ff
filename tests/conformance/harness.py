"""The pieces of a conformance run: Python 3.12, the two venvs, the PKI, and the processes.

Everything here binds to 127.0.0.1 and every wait is bounded. Processes are started in their
own process group and stopped (SIGTERM, then SIGKILL) by the group id of the process this
module started, never by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PLUGIN = HERE / "plugin"
VENV312 = HERE / ".venv312"
VENV_NOTIFY = HERE / ".venv-notify"
CACTUS_CLIENT = "cactus-client==1.3.3"
NOTIFICATIONS = "cactus-client-notifications==0.1.0"
WANTED = (3, 12)


class HarnessError(RuntimeError):
    pass


# -- Python 3.12 ------------------------------------------------------------------------------


def _version(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    major, minor = done.stdout.split()
    return int(major), int(minor)


def _pyenv_candidates() -> list[str]:
    roots = [os.environ.get("PYENV_ROOT", "")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        done = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
        roots.append(done.stdout.strip())
    found: list[str] = []
    for root in filter(None, roots):
        versions = Path(root) / "versions"
        if versions.is_dir():
            names = [p.name for p in versions.iterdir() if re.fullmatch(r"3\.12\.\d+", p.name)]
            for name in sorted(names, key=lambda n: int(n.split(".")[2]), reverse=True):
                found.append(str(versions / name / "bin" / "python3.12"))
    return found


def find_python312() -> str:
    """CONFORMANCE_PYTHON, else a working python3.12 on PATH, else pyenv's, else uv's."""
    candidates = [os.environ.get("CONFORMANCE_PYTHON", ""), shutil.which("python3.12") or ""]
    candidates += _pyenv_candidates()
    uv = shutil.which("uv")
    if uv:
        done = subprocess.run([uv, "python", "find", "3.12"], capture_output=True, text=True)
        candidates.append(done.stdout.strip())
    for candidate in filter(None, candidates):
        if _version(candidate) == WANTED:
            return candidate
    raise HarnessError(
        "no Python 3.12 found (tried CONFORMANCE_PYTHON, python3.12 on PATH, pyenv, uv); "
        "install one or set CONFORMANCE_PYTHON"
    )


# -- venvs --------------------------------------------------------------------------------------


def _digest(*parts: str | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.read_bytes() if isinstance(part, Path) else part.encode())
    return h.hexdigest()[:16]


def ensure_venv(venv: Path, python: str, requirements: Sequence[str], key: str) -> Path:
    """A venv at ``venv`` holding ``requirements``; rebuilt only when ``key`` changes."""
    stamp = venv / ".conformance-stamp"
    if stamp.exists() and stamp.read_text() == key and (venv / "bin" / "python").exists():
        return venv / "bin" / "python"
    print(f"setting up {venv.relative_to(REPO)} ...", flush=True)
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    log = venv / "pip.log"
    with open(log, "wb") as out:
        done = subprocess.run([*pip, *requirements], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise HarnessError(f"pip install {' '.join(requirements)} failed; see {log}")
    stamp.write_text(key)
    return venv / "bin" / "python"


def ensure_venvs() -> tuple[Path, Path]:
    """(.venv312's python with cactus-client and the plugin, the sink venv's python)."""
    python = find_python312()
    cactus = ensure_venv(
        VENV312,
        python,
        [CACTUS_CLIENT, "-e", str(PLUGIN)],
        _digest(python, CACTUS_CLIENT, PLUGIN / "pyproject.toml"),
    )
    sink = ensure_venv(VENV_NOTIFY, python, [NOTIFICATIONS], _digest(python, NOTIFICATIONS))
    return cactus, sink


# -- PKI and clients ----------------------------------------------------------------------------


def csip_command() -> list[str]:
    """How to run csip: CONFORMANCE_CSIP (a command line, e.g. another checkout's), else this
    interpreter if it has the project, else the project's venv."""
    if os.environ.get("CONFORMANCE_CSIP"):
        return shlex.split(os.environ["CONFORMANCE_CSIP"])
    try:
        import csip  # noqa: F401
    except ImportError:
        python = REPO / ".venv" / "bin" / "python"
        if not python.exists():
            raise HarnessError("run `make` first: no .venv with csipstream") from None
        return [str(python), "-m", "csip"]
    return [sys.executable, "-m", "csip"]


def sfdi(lfdi: str) -> int:
    """SFDI of an LFDI (CSIP_RULES §7)."""
    raw = int(lfdi[:9], 16)
    return raw * 10 + (10 - sum(map(int, str(raw))) % 10) % 10


def pin(raw: int) -> int:
    """A 6-digit Registration PIN: five digits and their sum-of-digits check digit."""
    return raw * 10 + sum(map(int, str(raw))) % 10


def make_pki(directory: Path) -> dict[str, dict[str, object]]:
    subprocess.run(
        [*csip_command(), "pki", "init", "--dir", str(directory), "--devices", "2",
         "--aggregators", "1"],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    identities: dict[str, dict[str, object]] = json.loads(
        (directory / "identities.json").read_text()
    )
    return identities


def client_configs(pki: Path, identities: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    """cactus clients: device1, device2 (their own EndDevices) and aggregator1, which acts
    for a DER whose LFDI is derived from the aggregator's (cactus wants them distinct)."""
    clients = []
    for number, name in enumerate(("device1", "device2", "aggregator1"), start=1):
        identity = identities[name]
        lfdi = str(identity["lfdi"])
        if identity["kind"] == "aggregator":
            lfdi = hashlib.sha256(f"cactus DER of {lfdi}".encode()).hexdigest()[:40].upper()
        clients.append(
            {
                "id": name,
                "type": "aggregator" if identity["kind"] == "aggregator" else "device",
                "certificate_file": str(pki / str(identity["cert"])),
                "key_file": str(pki / str(identity["key"])),
                "lfdi": lfdi,
                "sfdi": sfdi(lfdi),
                "pen": 12345,
                "pin": pin(11111 * number),
                "max_watts": 5000,
            }
        )
    return clients


# -- processes ----------------------------------------------------------------------------------


_running: set[Process] = set()
_lock = threading.Lock()


@dataclass(eq=False)
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the process group this module started, SIGKILL after ``grace``."""
        with _lock:
            _running.discard(self)
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def stop_everything() -> None:
    """Stop every process this module started and has not stopped yet."""
    with _lock:
        running = list(_running)
    for process in running:
        process.stop(grace=5)


def spawn(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Process:
    """Start ``command`` in its own process group, output to ``log``, cwd ``log``'s folder."""
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log.parent,  # not the checkout: `python -m csip` puts the cwd first on sys.path
            env=env,
        )
    process = Process(popen, log)
    with _lock:
        _running.add(process)
    return process


def start(
    command: Sequence[str], log: Path, ready: Path, timeout: float = 60.0
) -> tuple[Process, str]:
    """Start ``command`` and wait (at most ``timeout``) for it to write ``ready``."""
    ready.unlink(missing_ok=True)
    process = spawn(command, log)
    popen = process.popen
    deadline = time.monotonic() + timeout
    while not ready.exists() or not ready.read_text().strip():
        if popen.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise HarnessError(f"{command[0]} did not start; see {log}")
        time.sleep(0.05)
    return process, ready.read_text().strip()


def start_sink(python: Path, directory: Path) -> tuple[Process, int]:
    process, port = start(
        [str(python), str(HERE / "notify_sink.py"), "--ready-file", str(directory / "sink.ready")],
        directory / "sink.log",
        directory / "sink.ready",
    )
    return process, int(port)


# The server's IANA PEN, for both profiles: CACTUS checks that mRIDs the server makes up end
# with the PEN its configuration names (run.py writes the same number there).
SERVER_PEN = 0


def start_server(pki: Path, data: Path, token: str, profile: str) -> tuple[Process, int, int]:
    """``csip serve --notify-test-mode`` on 127.0.0.1 with fresh data; (process, port, admin)."""
    process, ports = start(
        [*csip_command(), "serve", "--data", str(data), "--pki", str(pki),
         "--host", "127.0.0.1", "--port", "0", "--admin-host", "127.0.0.1", "--admin-port", "0",
         "--admin-token", token, "--profile", profile, "--notify-test-mode",
         "--pen", str(SERVER_PEN),
         "--ready-file", str(data.parent / "server.ready"), "--log-level", "info"],
        data.parent / "server.log",
        data.parent / "server.ready",
    )  # fmt: skip
    port, admin_port = map(int, ports.split())
    return process, port, admin_port


def installed_versions(python: Path) -> dict[str, str]:
    """Versions of the packages that define the run (cactus-client, the test definitions)."""
    names = ("cactus-client", "cactus-test-definitions", "envoy-schema")
    code = (
        "import json, importlib.metadata as m; "
        f"print(json.dumps({{n: m.version(n) for n in {names!r}}}))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(done.stdout)
    return versions
