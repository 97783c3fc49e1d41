"""Run ``obs-pipeline run`` as a real subprocess on free loopback ports, as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

_HANDED_OUT: set[int] = set()


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nobody listens on right now, never one handed out before.

    The sockets are held open together while the ports are chosen, and ports already given to an
    earlier caller in this process are skipped: the kernel may hand the same just-released port to
    two consecutive binds, which made two receivers of one test config clash.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def free_port() -> int:
    """A TCP port nobody listens on right now (see :func:`free_ports`)."""
    return free_ports(1)[0]


class PipelineProcess:
    """An ``obs-pipeline run`` subprocess with its own config, ports and audit file."""

    def __init__(self, workdir: Path, config: dict[str, Any] | None = None, *, stdin: Any = subprocess.DEVNULL) -> None:
        self.workdir = workdir
        self.grpc_port, self.http_port, self.metrics_port, self.health_port = free_ports(4)
        self.audit_path = workdir / "audit" / "audit.jsonl"
        self.config = config if config is not None else self.default_config()
        self.config_path = workdir / "pipeline.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.stderr_path = workdir / "stderr.log"
        self._stdin = stdin
        self.proc: subprocess.Popen[bytes] | None = None

    def default_config(self) -> dict[str, Any]:
        """otlp (gRPC + HTTP) -> batch -> jsonl_audit for traces and logs, self-telemetry on."""
        return {
            "receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
            }}},
            "processors": {"batch": {"timeout": "50ms"}},
            "exporters": {"jsonl_audit": {"path": str(self.audit_path)}},
            "service": {
                "data_dir": str(self.workdir / "data"),
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jsonl_audit"]},
                    "logs": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jsonl_audit"]},
                },
                "telemetry": {
                    "metrics": {"endpoint": f"127.0.0.1:{self.metrics_port}"},
                    "health": {"endpoint": f"127.0.0.1:{self.health_port}"},
                },
                "shutdown_timeout": "20s",
            },
        }

    def start(self, *, wait_ready: bool = True) -> PipelineProcess:
        """Start the process and (by default) wait until /readyz answers 200."""
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "obs_pipeline", "run", str(self.config_path)],
            cwd=self.workdir, stdin=self._stdin, stdout=subprocess.PIPE, stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll /readyz until the pipeline says it is ready."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"obs-pipeline exited early ({self.proc.returncode}):\n{self.stderr()}")
            if self.http_get(f"http://127.0.0.1:{self.health_port}/readyz")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"obs-pipeline not ready after {timeout}s:\n{self.stderr()}")

    @staticmethod
    def http_get(url: str) -> tuple[int, str]:
        """GET ``url``: (status, body); (0, "") when nothing listens."""
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> str:
        """The /metrics page."""
        return self.http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit by itself."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"obs-pipeline did not exit within {timeout}s:\n{self.stderr()}") from None
        self._stderr.close()
        return code

    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def audit_lines(self) -> list[dict[str, Any]]:
        """The audit file's complete lines, parsed.

        A line the pipeline is still writing (no newline yet) is not one: read while the exporter
        appends, the file can end part way through a line (seen once in CI under load).
        """
        if not self.audit_path.exists():
            return []
        text = self.audit_path.read_text()
        complete = text[:text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def kill(self) -> None:
        """Last-resort cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def metric_value(page: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    for line in page.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


__all__ = ["PipelineProcess", "free_port", "free_ports", "metric_value", "signal"]
