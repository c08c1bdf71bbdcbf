"""Clean exits on Ctrl-C, including the second SIGINT a terminal's Ctrl-C under `ros2 launch` brings."""

from __future__ import annotations

import signal


def ignore_further_interrupts() -> None:
    """Let the shutdown in progress finish.

    Ctrl-C in a terminal running ``ros2 launch`` sends SIGINT to every process in the group, and
    launch then sends each node another SIGINT. The first one stops the executor; without this the
    second would raise KeyboardInterrupt in the middle of the clean-up (and abort the process while
    executor threads still run). launch escalates to SIGTERM if a node really hangs.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
