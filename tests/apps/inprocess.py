"""An application that runs the "chain" saga in its main thread with `saga.run()`, and
lives on after `run()` returns: `python -m tests.apps.inprocess`."""

from __future__ import annotations

import logging
import time

from .chain import saga

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    saga.run(workers=1, heartbeat_timeout=1.0, grace=30.0)
    print("run returned", flush=True)
    time.sleep(60)  # the rest of the application
