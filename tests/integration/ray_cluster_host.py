"""A Ray cluster of two 1-CPU nodes on this machine (ray.cluster_utils.Cluster), held by a process of
its own so that no Ray client library runs in the pytest process (a Ray driver's threads there
crashed pytest at teardown in CI: exit 139).

    python ray_cluster_host.py FOLDER

All Ray's files go under FOLDER: its sessions, and (RAY_TMPDIR) the ray_current_cluster file Ray
otherwise writes to /tmp/ray. When the nodes are up, the head's address is written to FOLDER/address.
The cluster is shut down when standard input closes: the test closed it, or the test's process died.
"""

import os
import sys
from pathlib import Path


def main(folder: Path) -> None:
    os.environ["RAY_TMPDIR"] = str(folder)
    (folder / "ray").mkdir(exist_ok=True)
    from ray.cluster_utils import Cluster

    # The machine's own address, not 127.0.0.1: a driver in another process could not connect to
    # nodes on 127.0.0.1 here (ray.init waited for the GCS client without end; Ray 2.60).
    node = {"num_cpus": 1}
    cluster = Cluster(initialize_head=True, head_node_args=node | {"include_dashboard": False, "temp_dir": str(folder)})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes(timeout=120)
        partial = folder / "address.partial"
        partial.write_text(cluster.address)
        partial.rename(folder / "address")  # whole or absent
        sys.stdin.read()  # until EOF
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
