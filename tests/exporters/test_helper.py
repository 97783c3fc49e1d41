"""Transport exceptions -> retryable or permanent (exporters/_helper.py), with real exceptions."""

from __future__ import annotations

import email.utils
import errno
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from obs_pipeline.errors import PermanentError, RetryableError
from obs_pipeline.exporters._helper import map_errors

WHAT = "otlp/backend: cannot export"


def mapped(exc: BaseException, *, reopens: bool = False) -> BaseException:
    """What ``map_errors`` raises for ``exc`` (``exc`` itself when it is not mapped)."""
    try:
        with map_errors(WHAT, reopens=reopens):
            raise exc
    except BaseException as raised:  # that is the point
        return raised
    raise AssertionError("map_errors swallowed the exception")


def closed_pipe_error() -> OSError:
    """The error of a real write to a pipe whose reader has closed (EPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        os.write(write_end, b"line\n")
    except OSError as exc:
        return exc
    finally:
        os.close(write_end)
    raise AssertionError("writing to a closed pipe succeeded")


def rpc_error(code: grpc.StatusCode, retry_delay: float | None = None) -> grpc.aio.AioRpcError:
    """A gRPC error as the channel raises it, with a ``RetryInfo`` trailer when ``retry_delay`` is given."""
    trailing = grpc.aio.Metadata()
    if retry_delay is not None:
        status = status_pb2.Status(code=code.value[0], message="slow down")
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(
            seconds=int(retry_delay), nanos=round(retry_delay % 1 * 1e9))))
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details="secret-value in the server's words")


class TestOSError:
    def test_closed_pipe_is_permanent(self):
        """A write to a pipe whose reader is gone fails at once: nobody will ever read that pipe again."""
        exc = closed_pipe_error()
        assert exc.errno == errno.EPIPE
        error = mapped(exc)
        assert isinstance(error, PermanentError)
        assert str(error) == f"{WHAT}: Broken pipe"
        assert error.__cause__ is exc

    def test_closed_pipe_is_retryable_for_a_destination_that_is_reopened(self):
        """An exporter that reopens its path on the next attempt (a FIFO may get a new reader) retries."""
        assert isinstance(mapped(closed_pipe_error(), reopens=True), RetryableError)

    def test_connection_reset_is_permanent(self):
        """ECONNRESET from a real TCP connection that its peer reset is the same as a closed pipe."""
        with socket.create_server(("127.0.0.1", 0)) as server:
            client = socket.create_connection(server.getsockname())
            peer, _ = server.accept()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # linger 0: a reset, not a FIN
            try:
                with pytest.raises(ConnectionResetError) as info:
                    client.recv(1)
            finally:
                client.close()
        assert info.value.errno == errno.ECONNRESET
        error = mapped(info.value)
        assert isinstance(error, PermanentError)
        assert str(error) == f"{WHAT}: Connection reset by peer"

    @pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
    def test_disk_full_is_retryable(self):
        """ENOSPC (a real write to /dev/full) is retryable: space may come back."""
        fd = os.open("/dev/full", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as info:
                os.write(fd, b"line\n")
        finally:
            os.close(fd)
        error = mapped(info.value)
        assert isinstance(error, RetryableError)
        assert str(error) == f"{WHAT}: No space left on device"

    @pytest.mark.parametrize("number", [errno.EIO, errno.EAGAIN, errno.EACCES, errno.EISDIR, errno.ENXIO])
    def test_other_os_errors_are_retryable(self, number):
        """EIO, EAGAIN (a stuck FIFO reader) and the rest are retryable, with the OS reason and no path."""
        error = mapped(OSError(number, os.strerror(number), "/secret/path"))
        assert isinstance(error, RetryableError)
        assert str(error) == f"{WHAT}: {os.strerror(number)}"

    def test_timeout_is_retryable(self):
        """A timeout (an OSError subclass with no errno) is retryable."""
        error = mapped(TimeoutError())
        assert isinstance(error, RetryableError)
        assert str(error) == f"{WHAT}: timed out"

    def test_unknown_exceptions_pass_unchanged(self):
        """What is not a transport error is not mapped: the engine decides (it retries it)."""
        exc = ValueError("x")
        assert mapped(exc) is exc

    def test_our_own_errors_pass_unchanged(self):
        """A RetryableError raised in the block keeps its retry hint."""
        exc = RetryableError("already mapped", retry_after=3)
        assert mapped(exc) is exc


class TestGrpc:
    @pytest.mark.parametrize("code", [
        grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
    ])
    def test_retryable_codes(self, code):
        """The OTLP spec's retryable codes are retryable, with no hint unless the server sent one."""
        error = mapped(rpc_error(code))
        assert isinstance(error, RetryableError)
        assert error.retry_after is None
        assert str(error) == f"{WHAT}: gRPC {code.name}"

    @pytest.mark.parametrize("code", [
        grpc.StatusCode.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
    ])
    def test_other_codes_are_permanent(self, code):
        """UNKNOWN, INTERNAL and every other code are never retried (a retry loop must not retry them)."""
        assert isinstance(mapped(rpc_error(code)), PermanentError)

    def test_resource_exhausted_without_retry_info_is_permanent(self):
        """RESOURCE_EXHAUSTED without RetryInfo means "never": dropped."""
        assert isinstance(mapped(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED)), PermanentError)

    def test_resource_exhausted_with_retry_info_is_retryable_after_the_delay(self):
        """RESOURCE_EXHAUSTED with RetryInfo is throttling: retry no sooner than the server asked."""
        error = mapped(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=2.5))
        assert isinstance(error, RetryableError)
        assert error.retry_after == 2.5

    def test_retry_info_on_a_retryable_code_is_honoured(self):
        """UNAVAILABLE with RetryInfo carries the delay too."""
        assert mapped(rpc_error(grpc.StatusCode.UNAVAILABLE, retry_delay=7)).retry_after == 7

    def test_message_never_quotes_the_server(self):
        """The server's details may echo telemetry: the message has only the code."""
        assert "secret" not in str(mapped(rpc_error(grpc.StatusCode.INVALID_ARGUMENT)))


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    """A real HTTP server on loopback; ``/<status>?retry_after=<value>`` answers with that status."""
    async def handle(request: web.Request) -> web.Response:
        headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        return web.Response(status=int(request.match_info["status"]), headers=headers, text="secret-value echoed")

    app = web.Application()
    app.router.add_post("/{status}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def post(url: str) -> BaseException:
    """What ``map_errors`` raises around a real aiohttp POST that raises for its status."""
    async with aiohttp.ClientSession() as session:
        try:
            with map_errors(WHAT):
                async with session.post(url, data=b"payload") as response:
                    response.raise_for_status()
        except BaseException as raised:  # that is the point
            return raised
    raise AssertionError("the request succeeded")


class TestHttp:
    @pytest.mark.parametrize("status", [429, 502, 503, 504])
    async def test_retryable_statuses(self, http_server, status):
        """429, 502, 503 and 504 are retryable; the message has the status, not the body or the URL."""
        error = await post(f"{http_server}/{status}")
        assert isinstance(error, RetryableError)
        assert isinstance(error.__cause__, aiohttp.ClientResponseError)
        assert error.retry_after is None
        assert str(error).startswith(f"{WHAT}: HTTP {status} ")
        assert "secret" not in str(error)
        assert "127.0.0.1" not in str(error)

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 500, 501])
    async def test_other_statuses_are_permanent(self, http_server, status):
        """400, 413, 500 and the other 4xx/5xx are never retried."""
        assert isinstance(await post(f"{http_server}/{status}"), PermanentError)

    async def test_retry_after_in_seconds(self, http_server):
        """``Retry-After: 7`` is a 7 s lower bound on the wait."""
        assert (await post(f"{http_server}/429?retry_after=7")).retry_after == 7

    async def test_retry_after_as_a_date(self, http_server):
        """``Retry-After`` as an HTTP date is the time from now until then."""
        when = email.utils.formatdate(time.time() + 30, usegmt=True)
        error = await post(f"{http_server}/503?retry_after={when.replace(' ', '%20')}")
        assert 25 < error.retry_after <= 30

    @pytest.mark.parametrize("value", ["soon", "inf", "nan"])
    async def test_unreadable_retry_after_is_no_hint(self, http_server, value):
        """A ``Retry-After`` that is not a delay is ignored (the backoff decides), never an endless wait."""
        assert (await post(f"{http_server}/503?retry_after={value}")).retry_after is None

    async def test_connection_refused_is_retryable(self):
        """A real refused connection (nothing listening) is retryable."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        error = await post(f"http://127.0.0.1:{port}/")
        assert isinstance(error, RetryableError)
        assert isinstance(error.__cause__, aiohttp.ClientConnectionError)
        assert "127.0.0.1" not in str(error)


def test_grpc_and_aiohttp_are_never_imported_by_a_file_exporter():
    """Mapping an OSError loads no transport library: an exporter that does not use grpc never imports it."""
    script = (
        "import sys, errno\n"
        "from obs_pipeline.exporters import jsonl_audit\n"
        "from obs_pipeline.exporters._helper import map_errors\n"
        "from obs_pipeline.errors import RetryableError\n"
        "try:\n"
        "    with map_errors('x'):\n"
        "        raise OSError(errno.EIO, 'I/O error')\n"
        "except RetryableError:\n"
        "    pass\n"
        "print(sorted(m for m in ('grpc', 'aiohttp') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]"
