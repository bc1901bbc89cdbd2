"""Fixtures: local clusters started with `chorus dev`, and clients connected to them.

The `chorus` binary comes from `CHORUS_BIN`, or else the release build of the repository
(`$CARGO_TARGET_DIR`, `target/` in the clone, or the shared target folder CI uses).
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

import chorus

REPO = Path(__file__).resolve().parents[2]
# `chorus dev` gives nodes two minutes to become ready; allow a little more.
READY_WITHIN_S = 150
STOP_WITHIN_S = 20


def chorus_bin() -> Path:
    """The `chorus` binary the tests run."""
    if os.environ.get("CHORUS_BIN"):
        return Path(os.environ["CHORUS_BIN"])
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "chorus")
    candidates.append(REPO / "target" / "release" / "chorus")
    candidates.append(Path.home() / ".cache" / "chorus-target" / "release" / "chorus")
    for c in candidates:
        if c.is_file():
            return c
    pytest.fail(
        "no chorus binary: build it with `cargo build --release -p chorus-node --bin chorus` "
        "or set CHORUS_BIN (looked in: " + ", ".join(map(str, candidates)) + ")"
    )


def _free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(nodes: int) -> int:
    """A base port whose node ports (UDP) and admin ports (TCP, +1000) are all free."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        ports = range(base, base + nodes)
        if all(_free(p, socket.SOCK_DGRAM) for p in ports) and all(
            _free(p + 1000, socket.SOCK_STREAM) for p in ports
        ):
            return base
    raise RuntimeError("no free range of ports found")


def unused_udp_port() -> int:
    """A loopback UDP port nothing listens on (as far as a bind can tell)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevCluster:
    """A `chorus dev` cluster running in the background, stopped by `stop()`."""

    def __init__(self, root: Path, nodes: int, settings: List[str], writable: bool) -> None:
        self.dir = root
        self.nodes = nodes
        self.base_port = free_base_port(nodes)
        args = [
            str(chorus_bin()),
            "dev",
            "--nodes",
            str(nodes),
            "--dir",
            str(root),
            "--base-port",
            str(self.base_port),
        ]
        for s in settings:
            args += ["--set", s]
        env = dict(os.environ)
        env.pop("CHORUS_CONFIG", None)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.output: List[str] = []
        # Its own process group, so a last-resort kill reaches the nodes it started too.
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self._wait_ready()
        if writable:
            self._wait_writable()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError(f"cluster not ready within {READY_WITHIN_S}s:\n{self.log()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                raise RuntimeError(f"`chorus dev` exited before ready:\n{self.log()}")
            self.output.append(line)
            if "ready" in line:
                return

    def _wait_writable(self) -> None:
        # `ready` means every node serves; peers may still be finishing their first
        # exchanges, during which a write to every replica can come up one short.
        deadline = time.monotonic() + READY_WITHIN_S
        with chorus.Client.connect(self.client_toml) as c:
            while True:
                try:
                    c.put("_ready", "probe", b"", w="all")
                    return
                except (chorus.QuorumError, chorus.Unavailable):
                    if time.monotonic() > deadline:
                        self.stop()
                        raise
                    time.sleep(0.1)

    def log(self) -> str:
        return "".join(self.output)

    @property
    def client_toml(self) -> Path:
        return self.dir / "client.toml"

    @property
    def admin_toml(self) -> Path:
        return self.dir / "admin.toml"

    def config(self, name: str, base: str = "client.toml", **changes: str) -> Path:
        """A client config next to `base` (so its relative paths still hold), with the
        given keys set to the given TOML values."""
        text = (self.dir / base).read_text()
        for k in changes:
            # `addresses` spans several lines; the other keys are one line each.
            text = re.sub(rf"(?ms)^{k} = (\[.*?\]|[^\n]*)\n", "", text)
        # Top-level keys go before any table; client.toml has none, but be safe.
        text = "".join(f"{k} = {v}\n" for k, v in changes.items()) + text
        path = self.dir / name
        path.write_text(text)
        return path

    def pid(self, k: int) -> int:
        return int((self.dir / f"n{k}" / "pid").read_text().strip())

    def signal(self, k: int, sig: int) -> None:
        os.kill(self.pid(k), sig)

    def kill(self, k: int) -> None:
        """SIGKILL node `k` and wait until it is gone."""
        pid = self.pid(k)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_WITHIN_S
        while _alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"node n{k} (pid {pid}) still running after SIGKILL")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def _alive(pid: int) -> bool:
    # The node is a child of `chorus dev`, which reaps it; until then it is a zombie.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="session")
def start_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DevCluster]]:
    """Starts a `chorus dev` cluster; every one started is stopped when the session ends."""
    started: List[DevCluster] = []

    def start(
        nodes: int = 3, settings: Optional[List[str]] = None, writable: bool = True
    ) -> DevCluster:
        """`writable`: also wait until a write reaches every replica."""
        c = DevCluster(tmp_path_factory.mktemp("cluster"), nodes, settings or [], writable)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


@pytest.fixture(scope="session")
def cluster(start_cluster: Callable[..., DevCluster]) -> DevCluster:
    """A 3-node cluster shared by the tests that don't stop nodes."""
    return start_cluster(3)


@pytest.fixture(scope="session")
def client(cluster: DevCluster) -> Iterator[chorus.Client]:
    c = chorus.Client.connect(cluster.client_toml)
    yield c
    c.close()


@pytest.fixture
def key() -> str:
    """A key no other test writes."""
    return "k-" + uuid.uuid4().hex
