"""Stop training on SIGTERM or SIGINT without losing work: save a checkpoint, then end cleanly.

A stopped job (the web UI's Stop button, a scheduler's preemption, Ctrl-C) keeps everything
up to the step in progress: the step finishes, a complete checkpoint is written, and the
run ends through the normal path (final save, metrics, loss plot). A second signal acts as
it would without this callback, so a stuck run can still be killed.
"""

import logging
import signal
import threading
from types import FrameType
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop(TrainerCallback):
    """Turn a stop signal into `should_save` + `should_training_stop` at the end of the current step."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.previous_handlers: dict[int, Any] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for number in STOP_SIGNALS:
            self.previous_handlers[number] = signal.signal(number, self.handle)

    def handle(self, number: int, frame: FrameType | None) -> None:
        logger.info("%s received: saving a checkpoint and stopping after this step", signal.Signals(number).name)
        self.requested.set()
        self.restore_handlers()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.requested.is_set():
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.restore_handlers()

    def restore_handlers(self) -> None:
        for number, handler in self.previous_handlers.items():
            signal.signal(number, handler)
        self.previous_handlers.clear()
