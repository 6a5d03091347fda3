"""Private `redis-server` processes on loopback ports: one server, or a 3-node Redis Cluster.

Each server writes an append-only file synced on every write (`appendfsync always`), so that a
restart, even after SIGKILL, comes back with every acknowledged write, as a production Redis that
the crawler relies on must. They never touch the shared Redis on 6379.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
POLL = 0.05
CLUSTER_BUS_OFFSET = 10_000


def redis_server_binary() -> str | None:
    """The path of `redis-server`, if it is installed."""
    return shutil.which("redis-server")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free too; at most 55535."""
    picker = random.SystemRandom()
    for _ in range(200):
        port = picker.randrange(20_000, 55_535)
        if _bindable(port) and _bindable(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisServer:
    """One `redis-server` on 127.0.0.1:`port` with its data in `directory`; restartable."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of this server alone (for a cluster node: this node's own keys)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"redis-server on {self.port} is already running")
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            "redis.log",
            "--daemonize",
            "no",
            *self.extra,
        ]
        self.process = subprocess.Popen(  # noqa: S603  # our own binary, our own arguments
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_for_ping()

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server: SIGTERM (a clean shutdown) or SIGKILL (a crash)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, how: signal.Signals = signal.SIGTERM, down_for: float = 0.0) -> None:
        """Stop (by `how`), stay down `down_for` seconds, start again with the same data."""
        self.stop(how)
        time.sleep(down_for)
        self.start()

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server on {self.port} exited:\n{log}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not answer in time")
                time.sleep(POLL)
        finally:
            client.close()


class RedisClusterServers:
    """Three `redis-server`s in cluster mode, one master each, created with `redis-cli`."""

    NODES = 3

    def __init__(self, directory: Path) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-server)")
        self.cli = cli
        self.nodes = [
            RedisServer(
                directory / f"node{n}",
                free_cluster_port(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                # The other masters keep serving their slots while one node restarts.
                "--cluster-require-full-coverage",
                "no",
            )
            for n in range(self.NODES)
        ]

    @property
    def url(self) -> str:
        """The crawler's URL for the cluster: `redis+cluster://` and one node."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> None:
        """Start the nodes, join them into a cluster, wait until every slot is served."""
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(  # noqa: S603  # our own binary, our own arguments
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "0"],
            input=b"yes\n",
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        self.wait_until_ok()

    def restart(
        self, index: int, how: signal.Signals = signal.SIGTERM, down_for: float = 1.0
    ) -> None:
        """Restart one node; it rejoins with its nodes.conf and its append-only file."""
        self.nodes[index].restart(how, down_for)
        self.wait_until_ok()

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def wait_until_ok(self) -> None:
        """Until every node reports `cluster_state:ok` and knows all three masters."""
        deadline = time.monotonic() + START_TIMEOUT
        while not all(self._node_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def _node_ok(self, node: RedisServer) -> bool:
        client = node.client()
        try:
            info = client.cluster("INFO")
        except redis.RedisError:
            return False
        finally:
            client.close()
        known = str(info.get("cluster_known_nodes")) if isinstance(info, dict) else ""
        return isinstance(info, dict) and info.get("cluster_state") == "ok" and known == "3"
