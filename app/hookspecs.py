"""The hooks a plugin may implement (pluggy project ``implicit_studio``).

A plugin module implements any of these functions, decorated with ``app.api.hookimpl`` and
with the same name. Registration hooks (``studio_tools`` ... ``studio_commands``) take no
arguments and return an iterable of records from :mod:`app.api`; they are called once at
start-up, one plugin at a time, so they must be cheap: build records, import nothing heavy.
Code is referenced from records as ``"module:attribute"`` strings and imported on first use.

``studio_session_event`` and ``studio_resolve_model`` are called later, while the studio runs,
each implementation behind the same guard as every other call into plugin code.

A plugin module may set ``REQUIRES_API = "MAJOR.MINOR"``; a plugin asking for a newer API than
:data:`app.api.API_VERSION` is refused (state *incompatible*) with a message naming both versions.

Evolution rules: hooks are only added, never removed within a major version; arguments are only
added, and an implementation may accept fewer arguments than the spec (pluggy passes only those it
names). Each hook notes the API version it appeared in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

import pluggy

from app.api import PROJECT_NAME

if TYPE_CHECKING:  # pragma: no cover - for readers and type checkers only
    from app.api import (
        CommandSpec,
        ReaderSpec,
        RewardSpec,
        SessionEvent,
        SettingsSpec,
        ToolSpec,
        ViewerSpec,
        WriterSpec,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

__all__ = [
    "hookspec",
    "studio_tools",
    "studio_readers",
    "studio_writers",
    "studio_viewers",
    "studio_settings",
    "studio_rewards",
    "studio_commands",
    "studio_session_event",
    "studio_resolve_model",
]


@hookspec
def studio_tools() -> Iterable[ToolSpec]:
    """Return the tools this plugin adds.

    Called once at start-up. Each :class:`~app.api.ToolSpec` has a kebab-case ``id`` unique
    across all plugins (a duplicate is rejected and reported; the first one wins), typed
    ``params``, and a ``run`` reference ``"module:function"`` imported when the tool first runs.

    Example::

        @hookimpl
        def studio_tools():
            return [ToolSpec(id="blur", title="Blur", run="my_plugin.ops:blur",
                             params=(ImageParam(name="image"), FloatParam(name="sigma", default=2.0,
                                     min=0.1, max=20.0)))]

    Added in API 1.0.
    """


@hookspec
def studio_readers() -> Iterable[ReaderSpec]:
    """Return file readers: :class:`~app.api.ReaderSpec` records with shell ``patterns`` and a
    ``read`` reference ``function(path) -> Result | list[Result]``.

    Used when files are dropped on the window, opened from the File menu, or given as a path to
    an image/mask parameter. Readers with a higher ``priority`` are tried first; a reader that
    raises ``ValueError`` passes the file on to the next one.

    Added in API 1.0.
    """


@hookspec
def studio_writers() -> Iterable[WriterSpec]:
    """Return result exporters: :class:`~app.api.WriterSpec` records naming the result ``kinds``
    they accept, the ``extensions`` they write and a ``write`` reference
    ``function(result, path) -> None``. Offered by *Export* in the window.

    Added in API 1.0.
    """


@hookspec
def studio_viewers() -> Iterable[ViewerSpec]:
    """Return viewers: :class:`~app.api.ViewerSpec` records mapping a result ``kind`` to a Qt
    widget factory ``"module:Factory"``. The factory is imported only when a result of that kind
    is first shown, so the plugin module itself never imports Qt.

    Added in API 1.0.
    """


@hookspec
def studio_settings() -> Iterable[SettingsSpec]:
    """Return preference pages: :class:`~app.api.SettingsSpec` records whose typed ``params``
    become a page in the Preferences dialog. Values are saved in the user's settings and read in
    a run with ``ctx.setting(section, name, default)``. The ``section`` is kebab-case
    (``"my-filters"``; one with ``_``, capitals or spaces fails the plugin at start-up) and shared
    by all plugins: start it with your plugin's name.

    Added in API 1.0.
    """


@hookspec
def studio_rewards() -> Iterable[RewardSpec]:
    """Return reward models usable by guided editing (h-Edit): :class:`~app.api.RewardSpec`
    records whose ``load`` reference builds a scoring callable on the run's device.

    Added in API 1.0.
    """


@hookspec
def studio_commands() -> Iterable[CommandSpec]:
    """Return extra command-line sub-commands: :class:`~app.api.CommandSpec` records; the command
    ``implicit-studio NAME args...`` calls ``main(args) -> int``. Names already used by the
    studio (``run``, ``tools``, ``plugins``...) are rejected.

    Added in API 1.0.
    """


@hookspec
def studio_session_event(event: SessionEvent) -> None:
    """Observe the session: called with a :class:`~app.api.SessionEvent` when a session opens or
    closes and when a run starts, finishes, fails or is cancelled. Called on the thread that
    produced the event (often a worker thread): do not touch widgets here. Exceptions are caught
    and reported; they never stop the run.

    Added in API 1.0.
    """


@hookspec(firstresult=True)
def studio_resolve_model(ref: str, resources_dir: Path) -> Optional[Path]:
    """Say which local file or folder a model *name* stands for, or return ``None`` for a name
    this plugin does not know (then the next plugin is asked, and a reference no plugin knows is
    taken as a local path).

    ``ref`` is the value of a :class:`~app.api.ModelParam` as the user gave it (``"default"``, a
    path, any name); ``resources_dir`` is this plugin's own resources folder (the studio's
    bundled ``resources/`` for the built-in plugins), where bundled models usually live. Return
    the path even when it does not exist: the studio then reports the missing model in one
    sentence. The first answer that is not ``None`` wins (``firstresult``); an implementation
    that raises is reported and skipped.

    The job runner resolves every run's model through this hook to record its fingerprint
    (:func:`~app.api.model_fingerprint`), and run functions resolve it the same way with
    :meth:`~app.api.RunContext.resolve_model`. Must be cheap: no model loading, no heavy import.

    Example (the bundled diffusion model)::

        @hookimpl
        def studio_resolve_model(ref, resources_dir):
            return resources_dir / "models" / "default" if ref == "default" else None

    Added in API 1.1.
    """
