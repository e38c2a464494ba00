"""Progress callbacks `(done, total) -> None` for long loops, drawn as a rich bar on the terminal.

Used by the CLI and by library entry points that report progress (`mtlhar.demo`); it imports nothing
from either, so both can use it.
"""

from __future__ import annotations

from collections.abc import Callable


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A progress callback (done, total) drawing a transient rich bar labelled `label`.

    The bar starts on the first call and stops once `done >= total`:

        update = progress_bar("generating clips")
        for i in range(n):
            update(i + 1, n)
    """
    from rich.progress import Progress

    state: dict = {}

    def update(done: int, total: int) -> None:
        if "p" not in state:
            state["p"] = Progress(transient=True)
            state["p"].start()
            state["id"] = state["p"].add_task(label, total=total)
        state["p"].update(state["id"], completed=done)
        if done >= total:
            state["p"].stop()

    return update
