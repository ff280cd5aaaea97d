"""The ``patchheat`` console script. Ctrl-C while Python is still importing the command (its
first tenth of a second) ends it as the command's own interruption does (one line, exit code
130), not with a traceback; from :func:`main` on, ``cli.main`` handles Ctrl-C (computed patches
kept). Only the console script imports this module: nothing else gets its signal handler.
"""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C (cli.EXIT_INTERRUPTED, not imported yet)


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("patchheat: interrupted\n")
    sys.exit(EXIT_INTERRUPTED)


# a process started with SIGINT ignored (`patchheat batch ... &` in a script) keeps it so
IGNORED = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
if not IGNORED:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

from .cli import main as _cli_main  # noqa: E402  (after the handler: the import is the wait)


def main() -> int:
    """Run ``patchheat`` (cli.main) with Python's own Ctrl-C handling back (or still
    ignored, where the process started so)."""
    if not IGNORED:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return _cli_main()
