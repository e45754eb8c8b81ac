"""TorchServe's own launcher (`ts.model_server.start`, what the `torchserve` script runs), with the Java
front end it starts set to die with it.

`torchserve --foreground` starts Java with subprocess.Popen and waits. If the launcher is killed (say,
pytest was killed and the launcher got its PR_SET_PDEATHSIG), Java would live on, serving on its ports.
Here every process the launcher starts gets PR_SET_PDEATHSIG too, so the chain perfsuite -> launcher ->
Java -> workers unwinds whatever ends first.

    python -m perfsuite_plugins.torchserve_launch --start --foreground ...   (the torchserve arguments)
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

from perfsuite.server import die_with_parent


class _PopenDyingWithParent(subprocess.Popen):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("preexec_fn", functools.partial(die_with_parent, os.getpid()))
        super().__init__(*args, **kwargs)


def main() -> int | None:
    subprocess.Popen = _PopenDyingWithParent  # only in this launcher process
    from ts.model_server import start

    sys.argv[0] = "torchserve"
    return start()


if __name__ == "__main__":
    sys.exit(main())
