"""The ``patchheat`` command's terminal: the progress line, lines that never glue onto it,
the package's warnings as lines, TensorFlow's start-up lines kept off stderr.

Standard library only when imported (so is ``cli``): Ctrl-C at any moment is the CLI's one-line
interruption, never a traceback.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PROGRESS_EVERY_S = 0.5
BAR_WIDTH = 30


def bar(done: int, total: int) -> str:
    """``done`` of ``total`` as '[####......]', BAR_WIDTH characters inside the brackets."""
    filled = int(BAR_WIDTH * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"


class ProgressLine:
    """A one-line progress bar on stderr: patches, patches/s, ETA."""

    mid_line = False  # a bar is on stderr without its newline (see say)

    def __init__(self, label: str, stream: Any = sys.stderr):
        self.label, self.stream, self.last = label, stream, 0.0

    def __call__(self, p: Any, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_EVERY_S and p.done < p.total:
            return
        self.last = now
        self.stream.write(
            f"\r{self.label} {bar(p.done, p.total)} {p.done}/{p.total} patches "
            f"{p.patches_per_s:6.1f} p/s ETA {p.eta_text} "
        )
        if p.done >= p.total:
            self.stream.write("\n")
        ProgressLine.mid_line = p.done < p.total
        self.stream.flush()


def say(text: str) -> None:
    """Print ``text`` as a line of its own on stderr (below a progress line in progress)."""
    if ProgressLine.mid_line:
        sys.stderr.write("\n")
        ProgressLine.mid_line = False
    print(text, file=sys.stderr, flush=True)


@contextmanager
def printed_warnings() -> Iterator[None]:
    """Show the package's own warnings (the cache's CacheWarning, the OpenSlide backend's
    OpenSlideLevelWarning) as 'patchheat: warning: ...' lines; others as Python shows them."""
    with warnings.catch_warnings():
        python_show = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if category.__module__.startswith(f"{__package__}."):
                say(f"patchheat: warning: {message}")
            else:
                python_show(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


_QUIET_IMPORT_LOCK = threading.Lock()


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 on /dev/null: its C++ start-up lines (oneDNN,
    CUDA probing) are written there before any setting can stop them. ``$PATCHHEAT_DEBUG`` keeps
    them; a broken install is left for load_model to report. One thread at a time (a batch
    worker's threads): the descriptor saved is always the real stderr."""
    if os.environ.get("PATCHHEAT_DEBUG") or "tensorflow" in sys.modules:
        return
    with _QUIET_IMPORT_LOCK:
        if "tensorflow" in sys.modules:  # another thread imported it meanwhile
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # its later C++ log lines
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            import tensorflow  # noqa: F401
        except Exception:
            pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
