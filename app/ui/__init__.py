"""Qt views of Implicit Studio (main window, docks, forms, viewers).

Views import the services layer (``app.api``, ``app.plugins``, ``app.jobs``) and ``storage``; nothing
below imports Qt. Importing this package is cheap: the window is built by
:func:`app.ui.main_window.launch`.
"""
