"""The one ``main()`` both nodes share: init, build, spin, and a clean exit however it ends."""

from __future__ import annotations

import signal
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from face_recognition_ros.errors import FaceRecognitionError


def ignore_further_interrupts() -> None:
    """Let the shutdown in progress finish.

    Ctrl-C in a terminal running ``ros2 launch`` sends SIGINT to every process in the group, and
    launch then sends each node another SIGINT. The first one stops the executor; without this the
    second would raise KeyboardInterrupt in the middle of the clean-up (and abort the process while
    executor threads still run). launch escalates to SIGTERM if a node really hangs.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None, threads: int = 1,
             until: Callable[[Node], bool] | None = None) -> int:
    """Run the node ``make_node`` builds until shutdown (or until ``until(node)`` holds); exit status.

    ``threads > 1`` spins a multi-threaded executor (services answered while a frame is processed).
    A configuration error (``FaceRecognitionError``: no weights, unknown encoder, unusable gallery)
    is one fatal log line and exit status 1, not a traceback. The node's ``stop()``, when it has one,
    runs before it is destroyed.
    """
    rclpy.init(args=args)
    node = None
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
    try:
        node = make_node()
        executor.add_node(node)
        while rclpy.ok() and not (until is not None and until(node)):
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except FaceRecognitionError as error:
        rclpy.logging.get_logger(name).fatal(str(error))
        return 1
    finally:
        ignore_further_interrupts()
        if node is not None and hasattr(node, "stop"):
            node.stop()
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
