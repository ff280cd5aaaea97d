"""Workers: functions off the GUI thread, their results back on it, each worker kept until done."""

from __future__ import annotations

import threading

from napari_patchheat._qt.threads import Workers


def test_results_and_errors_come_back_on_the_gui_thread(qtbot):
    workers, got = Workers(), []
    gui = threading.get_ident()
    ran_on: list[int] = []

    def work(x: int) -> int:
        ran_on.append(threading.get_ident())
        return 2 * x

    def fail() -> None:
        raise OSError("disk full")

    workers.start(work, 21, returned=lambda r: got.append((r, threading.get_ident())),
                  errored=lambda e: got.append(("error", e)))
    workers.start(fail, returned=got.append,
                  errored=lambda e: got.append((str(e), threading.get_ident())))
    assert not workers.idle
    qtbot.waitUntil(lambda: workers.idle and len(got) == 2, timeout=10_000)
    assert sorted(got, key=str) == sorted([(42, gui), ("disk full", gui)], key=str)
    assert ran_on and ran_on[0] != gui
