"""A model's vocabulary in the prompt box (part of the widget kit).

Some models know only a few words: the bundled one was trained on captions of flat shapes and reads
any other word letter by letter, to no effect ("a white circle" came out as a purple ring: white is
only a *background* colour for it). A model folder says so in ``vocabulary.jsonl`` (a line
``{"role": "shape", "words": [...]}`` a role; the bundled model's, outside its fingerprint) or in
``implicit_studio.json``::

    {"vocabulary": {"about": "...", "words": {"shape": ["circle", ...], "object colour": [...],
                                              "background colour": ["white", ...], ...}}}

or, without that, through a small closed tokenizer (``tokenizer/vocab.json`` of at most
:data:`CLOSED_VOCABULARY` entries, whose whole-word tokens are its words). :class:`Vocabulary`
holds the words and their roles (no Qt); :func:`attach` makes a prompt box mark the words the model
does not know (a red wavy line) and the words used in a role the model does not know them in (an
amber dotted line: "white" before a shape), explain them in a line under the box, and complete the
words it knows as they are typed. Models with an open vocabulary (Stable Diffusion's 49,408 tokens)
have none of this: :meth:`Vocabulary.from_model_folder` gives None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
CLOSED_VOCABULARY = 5000  # a tokenizer with at most this many tokens lists the model's words
#: A word known in the first role but not the second, used right before a shape word, is used in a
#: role the model does not know it in ("white" is a background colour, never an object's).
MISUSED_ROLES = {"background colour": "object colour"}
SHAPE_ROLE = "shape"


@dataclass(frozen=True)
class WordIssue:
    start: int  # character offsets in the text
    end: int
    word: str
    kind: str  # "unknown" or "role"
    message: str


class Vocabulary:
    """The words a model knows, each with the roles it knows them in (roles may be empty)."""

    def __init__(self, roles: Mapping[str, Iterable[str]] | None = None, words: Iterable[str] = (),
                 source: str = ""):
        self.roles: dict[str, set[str]] = {}
        for role, ws in (roles or {}).items():
            for w in ws:
                self.roles.setdefault(w.lower(), set()).add(role)
        for w in words:
            self.roles.setdefault(w.lower(), set())
        self.source = source
        self._by_role: dict[str, list[str]] = {}
        for w, rs in self.roles.items():
            for r in rs:
                self._by_role.setdefault(r, []).append(w)

    # -- reading one from a model ------------------------------------------------------------
    @classmethod
    def from_model_folder(cls, folder: str | Path | None) -> Optional[Vocabulary]:
        """The vocabulary a model folder declares (its card's, else a closed tokenizer's), or
        None (an open vocabulary, or nothing to read)."""
        if folder is None:
            return None
        folder = Path(folder)
        if not folder.is_dir():
            return None
        lines = folder / "vocabulary.jsonl"  # beside the card, outside the model's fingerprint
        if lines.is_file():
            roles: dict[str, list[str]] = {}
            try:
                for line in lines.read_text(encoding="utf-8").splitlines():
                    item = json.loads(line) if line.strip() else {}
                    if isinstance(item, dict) and isinstance(item.get("words"), list) and item.get("role"):
                        roles[str(item["role"])] = [str(w) for w in item["words"]]
            except (OSError, ValueError):
                roles = {}
            if roles:
                return cls(roles, source=f"{folder.name}/{lines.name}")
        card = folder / "implicit_studio.json"
        try:
            data = json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}
        except (OSError, ValueError):
            data = {}
        voc = data.get("vocabulary") if isinstance(data, dict) else None
        if isinstance(voc, dict) and isinstance(voc.get("words"), dict):
            roles = {str(r): [str(w) for w in ws] for r, ws in voc["words"].items() if isinstance(ws, list)}
            if roles:
                return cls(roles, source=f"{folder.name}/{card.name}")
        tok = folder / "tokenizer" / "vocab.json"
        try:
            tokens = json.loads(tok.read_text(encoding="utf-8")) if tok.is_file() else None
        except (OSError, ValueError):
            tokens = None
        if isinstance(tokens, dict) and 0 < len(tokens) <= CLOSED_VOCABULARY:
            words = [t[:-4] for t in tokens if t.endswith("</w>") and WORD.fullmatch(t[:-4]) and len(t) > 5]
            if words:
                return cls(words=words, source=f"{folder.name}/tokenizer")
        return None

    # -- questions -------------------------------------------------------------------------------
    def __contains__(self, word: str) -> bool:
        return word.lower() in self.roles or all(p in self.roles for p in word.lower().split("-"))

    def words(self) -> list[str]:
        return sorted(self.roles)

    def words_in(self, role: str) -> list[str]:
        return sorted(self._by_role.get(role, ()))

    def completions(self, prefix: str) -> list[str]:
        p = prefix.lower()
        return [w for w in self.words() if w.startswith(p) and w != p]

    def check(self, text: str) -> list[WordIssue]:
        """The words of ``text`` the model does not know, and the ones used in a role it does not
        know them in (a background-only colour before a shape: "a white circle")."""
        issues: list[WordIssue] = []
        tokens = [(m.start(), m.end(), m.group(0)) for m in WORD.finditer(text)]
        for i, (a, b, w) in enumerate(tokens):
            if w not in self:
                issues.append(WordIssue(a, b, w, "unknown", f"“{w}” is not a word this model knows"))
                continue
            roles = self.roles.get(w.lower(), set())
            role = next((r for r, needed in MISUSED_ROLES.items() if r in roles and needed not in roles), None)
            if role is None:
                continue
            following = [t[2].lower() for t in tokens[i + 1:i + 3]]
            if any(SHAPE_ROLE in self.roles.get(f, ()) for f in following):
                colours = ", ".join(self.words_in("object colour")[:8])
                issues.append(WordIssue(a, b, w, "role", f"“{w}” is only a {role} for this model"
                                        + (f"; objects come in {colours}" if colours else "")))
        return issues

    def summary(self, issues: list[WordIssue]) -> str:
        """One line for under the prompt box."""
        unknown = list(dict.fromkeys(i.word for i in issues if i.kind == "unknown"))
        parts = []
        if unknown:
            shown = ", ".join(unknown[:6]) + ("…" if len(unknown) > 6 else "")
            parts.append(f"Not in this model's vocabulary (it reads them as nothing): {shown}")
        parts += list(dict.fromkeys(i.message for i in issues if i.kind == "role"))
        return " · ".join(parts)


# ---------------------------------------------------------------------------------------------
# Qt: marking and completing in a prompt box
# ---------------------------------------------------------------------------------------------


def attach(edit, note, vocabulary: Optional[Vocabulary]):  # noqa: ANN001, ANN201 - Qt widgets
    """Give the prompt box ``edit`` (a QPlainTextEdit) ``vocabulary``: marks, the explanation in
    the label ``note``, completion. ``None`` takes them away. Returns the helper (kept on ``edit``)."""
    helper = getattr(edit, "_vocabulary_helper", None)
    if helper is None:
        helper = _PromptHelper(edit, note)
        edit._vocabulary_helper = helper
    helper.set_vocabulary(vocabulary)
    return helper


def _qt():
    from PySide6 import QtCore, QtGui, QtWidgets  # noqa: PLC0415

    return QtCore, QtGui, QtWidgets


class _PromptHelper:
    def __init__(self, edit, note):  # noqa: ANN001
        QtCore, QtGui, QtWidgets = _qt()
        self.edit, self.note = edit, note
        self.vocabulary: Optional[Vocabulary] = None
        self.issues: list[WordIssue] = []
        self._checked: Optional[str] = None  # the text the issues are of
        helper = self

        class Highlighter(QtGui.QSyntaxHighlighter):
            def highlightBlock(self, text: str) -> None:  # noqa: N802 - Qt API
                if helper.vocabulary is None:
                    return
                base = self.currentBlock().position()
                for issue in helper.issues:
                    a, b = issue.start - base, issue.end - base
                    if 0 <= a < len(text) + 1 and b > 0:
                        self.setFormat(max(a, 0), min(b, len(text)) - max(a, 0), helper.formats[issue.kind])

        unknown = QtGui.QTextCharFormat()
        unknown.setUnderlineStyle(QtGui.QTextCharFormat.UnderlineStyle.WaveUnderline)
        unknown.setUnderlineColor(QtGui.QColor("#e5484d"))
        role = QtGui.QTextCharFormat()
        role.setUnderlineStyle(QtGui.QTextCharFormat.UnderlineStyle.DotLine)
        role.setUnderlineColor(QtGui.QColor("#f5a524"))
        self.formats = {"unknown": unknown, "role": role}
        self.highlighter = Highlighter(edit.document())
        class Completer(QtWidgets.QCompleter):
            """Return, Enter and Tab in the popup put the chosen word in (and no newline in the box)."""

            KEYS = (QtCore.Qt.Key.Key_Tab, QtCore.Qt.Key.Key_Return, QtCore.Qt.Key.Key_Enter)

            def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt API: the completer filters its popup
                if ev.type() == QtCore.QEvent.Type.KeyPress and ev.key() in self.KEYS and self.popup().isVisible():
                    helper.accept()
                    return True
                return super().eventFilter(obj, ev)

        # every Qt object here has a Qt parent, so none is deleted by Python while Qt still uses it
        self.completer = Completer(edit)
        self.model = QtCore.QStringListModel(self.completer)
        self.completer.setModel(self.model)
        self.completer.setWidget(edit)
        self.completer.setCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setCompletionMode(QtWidgets.QCompleter.CompletionMode.PopupCompletion)
        edit.textChanged.connect(self.recheck)
        self._filter = _KeyFilter(self)
        edit.installEventFilter(self._filter)
        self.completer.activated[QtCore.QModelIndex].connect(self.accept)  # a click in the popup

    def set_vocabulary(self, vocabulary: Optional[Vocabulary]) -> None:
        self.vocabulary = vocabulary
        self._checked = None
        self.model.setStringList(vocabulary.words() if vocabulary is not None else [])
        self.edit.setToolTip(f"The model knows {len(vocabulary.words())} words ({vocabulary.source}); "
                             "Tab or Enter completes one" if vocabulary is not None else "")
        self.recheck()

    def recheck(self) -> None:
        text = self.edit.toPlainText()
        if text == self._checked:  # re-marking the text reports a change of it too
            return
        self._checked = text
        self.issues = self.vocabulary.check(text) if self.vocabulary is not None else []
        summary = self.vocabulary.summary(self.issues) if self.vocabulary is not None else ""
        self.note.setText(summary)
        self.note.setToolTip(summary)
        self.note.setVisible(bool(summary))
        self.highlighter.rehighlight()

    def prefix(self) -> str:
        cursor = self.edit.textCursor()
        text = self.edit.toPlainText()[:cursor.position()]
        m = re.search(r"[A-Za-z-]+$", text)
        return m.group(0) if m else ""

    def complete(self) -> None:
        """Offer the known words that start with the word being typed (two letters or more)."""
        if self.vocabulary is None:
            return
        prefix = self.prefix()
        popup = self.completer.popup()
        if len(prefix) < 2 or not self.vocabulary.completions(prefix):
            popup.hide()
            return
        self.completer.setCompletionPrefix(prefix)
        popup.setCurrentIndex(self.completer.completionModel().index(0, 0))
        rect = self.edit.cursorRect()
        rect.setWidth(popup.sizeHintForColumn(0) + popup.verticalScrollBar().sizeHint().width() + 8)
        self.completer.complete(rect)

    def accept(self, index=None) -> None:  # noqa: ANN001 - a QModelIndex
        """Put the word chosen in the popup (its current one) in place of the word being typed."""
        popup = self.completer.popup()
        index = index if index is not None and index.isValid() else popup.currentIndex()
        if not index.isValid():
            index = self.completer.completionModel().index(0, 0)
        popup.hide()
        if index.isValid():
            self.insert(str(index.data()))

    def insert(self, word: str) -> None:
        """Replace the word being typed by ``word``."""
        prefix = self.prefix()
        cursor = self.edit.textCursor()
        QtCore, QtGui, _ = _qt()
        cursor.movePosition(QtGui.QTextCursor.MoveOperation.Left, QtGui.QTextCursor.MoveMode.KeepAnchor, len(prefix))
        cursor.insertText(word)
        self.edit.setTextCursor(cursor)


def _KeyFilter(helper: _PromptHelper):  # noqa: N802 - a QObject made on first use
    QtCore, QtGui, QtWidgets = _qt()

    class KeyFilter(QtCore.QObject):
        KEYS = (QtCore.Qt.Key.Key_Tab, QtCore.Qt.Key.Key_Backtab, QtCore.Qt.Key.Key_Return,
                QtCore.Qt.Key.Key_Enter, QtCore.Qt.Key.Key_Escape)

        def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt API
            popup = helper.completer.popup()
            if ev.type() == QtCore.QEvent.Type.KeyPress and popup.isVisible() and ev.key() in self.KEYS:
                helper.accept() if ev.key() != QtCore.Qt.Key.Key_Escape else popup.hide()
                return True
            if ev.type() == QtCore.QEvent.Type.KeyRelease and helper.vocabulary is not None:
                text = ev.text()
                if text and (text.isalpha() or text == "-"):
                    helper.complete()
                elif ev.key() not in (QtCore.Qt.Key.Key_Shift, QtCore.Qt.Key.Key_Control, QtCore.Qt.Key.Key_Down,
                                      QtCore.Qt.Key.Key_Up):
                    helper.completer.popup().hide()
            return False

    return KeyFilter(helper.edit)


def read_vocabulary(resolve: Callable[[str], Optional[Path]], ref: str | None) -> Optional[Vocabulary]:
    """The vocabulary of model ``ref`` (``resolve`` turns a reference into its folder), or None."""
    if not ref:
        return None
    try:
        folder = resolve(ref)
    except Exception:  # noqa: BLE001 - an unknown model has no vocabulary to show
        return None
    return Vocabulary.from_model_folder(folder)
