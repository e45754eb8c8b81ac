"""perfsuite.scratch: the temporary folders a killed run leaves are removed by the next run, and
nothing of a live run (or not perfsuite's) is touched."""

import os
import subprocess
import sys

import pytest

from perfsuite.scratch import owned_tmpdir, remove_stale


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_a_folder_whose_process_ended_is_removed_and_the_rest_is_kept(tmp_path):
    mine = owned_tmpdir("psray-", tmp_path)
    assert mine.name.startswith(f"psray-p{os.getpid()}-")
    dead = tmp_path / f"ps-ray-serve-43909-p{_dead_pid()}-k3j9x0aq"
    (dead / "session" / "sockets").mkdir(parents=True)
    untagged = tmp_path / "psray-r916g2rw"  # an older perfsuite's: no owner in the name
    untagged.mkdir()
    other = tmp_path / f"myapp-p{_dead_pid()}-k3j9x0aq"  # not perfsuite's
    other.mkdir()
    a_file = tmp_path / f"ps-x-p{_dead_pid()}-abcdefgh"
    a_file.write_text("not a folder")
    assert remove_stale([tmp_path]) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, untagged, other, a_file))


def test_a_folder_of_a_live_process_is_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"ps-vllm-offline-p{sleeper.pid}-abcdefgh"
        live.mkdir()
        assert remove_stale([tmp_path]) == [] and live.exists()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
    assert remove_stale([tmp_path]) == [live] and not live.exists()


def test_only_perfsuites_prefixes_can_be_owned(tmp_path):
    with pytest.raises(ValueError, match="must start with"):
        owned_tmpdir("perfsuite-logs-", tmp_path)
