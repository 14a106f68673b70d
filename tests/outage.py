"""A TCP forwarder on loopback that can go away for a while: an object store whose endpoint is down for seconds."""
import socket
import threading
import time


class Outage:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`; `down(seconds)` refuses and drops every connection."""

    def __init__(self, port: int, upstream: int):
        self.port, self.upstream = port, upstream
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._back_at = 0.0                  # monotonic time a down endpoint comes back
        self._closed = False
        self.up()

    def up(self) -> None:
        if self._closed:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self, seconds: float) -> None:
        """Gone now, back in `seconds` (in the background). Down again while down: back `seconds` from now."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
            self._back_at = max(self._back_at, time.monotonic() + seconds)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        if listener is not None:                 # else the outage under way brings it back, at the later time
            _stop_listening(listener)
            threading.Thread(target=self._come_back, daemon=True).start()

    def _come_back(self) -> None:
        while (wait := self._back_at - time.monotonic()) > 0:
            time.sleep(wait)
        self.up()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
        if listener:
            _stop_listening(listener)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return                                   # closed: down() or close()
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _stop_listening(listener: socket.socket) -> None:
    # close() alone leaves a socket that another thread blocks in accept() on listening (Linux);
    # shutdown() wakes that accept() and stops the port taking connections.
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
