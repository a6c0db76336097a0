"""Entry script of the desktop bundles (PyInstaller runs this as ``__main__``).

``implicit-studio --self-test [...]`` runs :mod:`app.selftest`; everything else goes to the
normal command line (:func:`app.cli.main`: no command opens the window). Handling
``--self-test`` here keeps bundles testable whether or not ``app.cli`` knows the flag.
"""

import multiprocessing
import sys


def _main() -> int:
    multiprocessing.freeze_support()  # child processes of a frozen app re-enter here
    argv = sys.argv[1:]
    if argv and argv[0] == "--self-test":
        from app.selftest import main as selftest_main

        return selftest_main(argv[1:])
    from app.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_main())
