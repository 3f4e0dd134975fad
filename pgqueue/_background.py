"""The daemon thread behind a worker's background parts (heartbeat, pruner)."""

from __future__ import annotations

import threading


class BackgroundThread:
    """Runs :meth:`_run` on a daemon thread named ``name`` from :meth:`start` until
    :meth:`stop`, which sets :attr:`_stop` (the event ``_run`` waits on between rounds) and
    waits for the thread."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop after its current round; wait up to ``timeout`` seconds."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
