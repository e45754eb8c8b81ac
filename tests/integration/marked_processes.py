"""The processes a test marked: every live process whose environment holds `variable=token`. The
integration tests that check nothing is left running put a fresh token in the environment of the run
they start; every process that run starts inherits it."""

import psutil


def marked_processes(variable: str, token: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose environment has `variable` set to `token`."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(variable) == token and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found
