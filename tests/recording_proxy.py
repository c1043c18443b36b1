"""
A TCP proxy on loopback that records every byte it carries, both ways:
put between a client and the relay, it shows what the network sees.
"""

from __future__ import annotations

import socket
import threading

from twisted.trial import unittest


class RecordingProxy:
    """
    Listens on a loopback port of its own and forwards each connection to
    C{upstream} (host, port), keeping a copy of everything in L{recorded}.
    Stopped when the test ends.
    """

    def __init__(self, test: unittest.TestCase, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._recorded = bytearray()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()
        test.addCleanup(self.stop)

    @property
    def recorded(self) -> bytes:
        with self._lock:
            return bytes(self._recorded)

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            self._sockets += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._copy, args=(a, b), daemon=True).start()

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    self._recorded += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def stop(self) -> None:
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
