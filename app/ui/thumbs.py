"""Thumbnails decoded off the GUI thread.

``ThumbnailLoader.request(key, path)`` reads the file with ``QImageReader`` scaled to the
thumbnail size in a thread pool and emits ``ready(key, QImage)`` on the GUI thread; results are
cached by (path, mtime). ``QImage`` (unlike ``QPixmap``) may be created in any thread.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Hashable

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QImageReader

THUMB = 112
CACHE_MAX = 600


class _Signals(QObject):
    done = Signal(object, object, QImage)  # key, cache key, image


class _Job(QRunnable):
    def __init__(self, key: Hashable, path: str, ckey: tuple, size: int, signals: _Signals):
        super().__init__()
        self.key, self.path, self.ckey, self.size, self.signals = key, path, ckey, size, signals
        self.setAutoDelete(True)

    def run(self) -> None:
        reader = QImageReader(self.path)
        reader.setAutoTransform(True)
        s = reader.size()
        if s.isValid() and (s.width() > self.size or s.height() > self.size):
            reader.setScaledSize(s.scaled(QSize(self.size, self.size), Qt.AspectRatioMode.KeepAspectRatio))
        img = reader.read()
        try:
            self.signals.done.emit(self.key, self.ckey, img)
        except RuntimeError:  # loader deleted while the app closes
            pass


class ThumbnailLoader(QObject):
    ready = Signal(object, QImage)

    def __init__(self, size: int = THUMB, parent: QObject | None = None):
        super().__init__(parent)
        self.size = size
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._cache: OrderedDict[tuple, QImage] = OrderedDict()
        self._signals = _Signals()
        self._signals.done.connect(self._done, Qt.ConnectionType.QueuedConnection)

    def request(self, key: Hashable, path: str | os.PathLike | None) -> bool:
        """Ask for a thumbnail; returns True when answered synchronously from the cache."""
        if not path:
            return False
        p = os.fspath(path)
        try:
            ckey = (p, os.stat(p).st_mtime_ns)
        except OSError:
            return False
        img = self._cache.get(ckey)
        if img is not None:
            self._cache.move_to_end(ckey)
            self.ready.emit(key, img)
            return True
        self.pool.start(_Job(key, p, ckey, self.size, self._signals))
        return False

    def _done(self, key: Hashable, ckey: tuple, img: QImage) -> None:
        if not img.isNull():
            self._cache[ckey] = img
            while len(self._cache) > CACHE_MAX:
                self._cache.popitem(last=False)
        self.ready.emit(key, img)

    def wait(self, msecs: int = 5000) -> bool:
        return self.pool.waitForDone(msecs)
