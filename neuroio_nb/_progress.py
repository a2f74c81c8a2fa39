"""Progress bars that leave nothing broken behind (layer 0).

* No bar at all for work that finishes within :data:`DELAY` seconds
  (``tqdm(delay=...)``): a quick listing shows nothing.
* In a notebook, a bar is shown through a display handle and, when it closes,
  its output is replaced by plain text: empty once finished, or "stopped at
  37 of 120" if it was cut short. So a saved notebook, or an executed copy
  (``tools/run_notebooks.py``), never keeps a widget whose model is gone
  ("Error displaying widget: model not found") nor the bar's first frame as
  text ("0%|").
* Elsewhere it is the terminal tqdm, on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm as terminal_tqdm

#: Seconds of work before a bar appears.
DELAY = 0.5


def progress_bar(*, total: int, desc: str, unit: str, progress: bool | None = None, **options: Any) -> Any:
    """A tqdm bar (notebook or terminal).

    ``progress`` None (the toolkit's default): it appears only after :data:`DELAY` seconds
    of work; True: at once (asked for); False: never.
    """
    options = {"leave": False, "delay": 0 if progress else DELAY, "disable": progress is False, **options}
    notebook_class = _notebook_class()
    cls = notebook_class if notebook_class is not None else terminal_tqdm
    return cls(total=total, desc=desc, unit=unit, **options)


def _notebook_class() -> Any:
    """The notebook bar class when running in a Jupyter kernel with ipywidgets, else None.

    Outside a kernel (ipykernel not loaded: a script, the command line) nothing more is
    imported: asking tqdm.auto would load IPython, and tqdm.notebook ipywidgets, which cost
    a command line a noticeable start-up."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from tqdm.auto import tqdm as auto
        from tqdm.notebook import tqdm_notebook
    except ImportError:  # pragma: no cover - tqdm without its notebook part
        return None
    if not (isinstance(auto, type) and issubclass(auto, tqdm_notebook)):
        return None
    global _NotebookBar
    if _NotebookBar is None:
        _NotebookBar = _make_notebook_class(tqdm_notebook)
    return _NotebookBar


_NotebookBar: Any = None


def _make_notebook_class(base: Any) -> Any:
    from IPython.display import display as ipython_display

    display: Callable[..., Any] = ipython_display

    class NotebookBar(base):  # type: ignore[misc]  # tqdm's notebook class, imported lazily: Any here
        """tqdm's notebook bar, displayed through a handle that is emptied on close."""

        _handle: Any = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, display=False, **kwargs)
            if not self.disable and self.delay <= 0:
                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def display(
            self, msg: Any = None, pos: Any = None, close: bool = False, bar_style: Any = None, check_delay: bool = True
        ) -> Any:
            if check_delay and self.delay > 0 and not self.displayed:
                self._handle = display(self.container, display_id=True)
                self.displayed = True
            return super().display(msg, pos, close=close, bar_style=bar_style, check_delay=False)

        def close(self) -> None:
            if self.disable:
                return
            cut_short = bool(self.total and self.n < self.total)
            done, total = self.n, self.total
            super().close()
            if self._handle is not None:
                text = f"{self.desc}: stopped at {done:,} of {total:,} {self.unit}s" if cut_short else ""
                self._handle.update({"text/plain": text}, raw=True)
                self._handle = None
            container = getattr(self, "container", None)
            if container is not None:
                for child in (*container.children, container):
                    child.close()

    return NotebookBar
