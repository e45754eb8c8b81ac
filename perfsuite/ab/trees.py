"""The two code trees of an A/B run: base at a git ref (a temporary worktree) and head (the working
tree, or a second worktree), each with the interpreter whose environment runs its servers.

A tree's code is what its side runs: its tests, engine settings and workloads (collected by
perfsuite.ab.plan) and its framework plugins (started by perfsuite.ab.worker). Both are imported from
the tree itself: PYTHONPATH puts the tree's folder first, and a folder beside it holds the name
`perfsuite_plugins` as a link to the tree's plugins/ (the installed package maps that name to the
working tree's plugins/, which would run head's plugin code on both sides).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from perfsuite.errors import UsageError

__all__ = ["Tree", "Trees", "git"]

GIT_TIMEOUT_S = 120


def git(*args: str, cwd: Path) -> str:
    """git's output; UsageError with git's own message when it fails or takes too long."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise UsageError("git is not installed: perfsuite ab needs it to check out the base") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"git {' '.join(args)} took more than {GIT_TIMEOUT_S} s in {cwd}") from None
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Tree:
    """One side's code: where it is, which commit it is, and which interpreter runs it."""

    side: str  # "base" or "head"
    root: Path
    ref: str | None  # the ref asked for; None: the working tree as it is
    commit: str
    dirty: bool  # the working tree had uncommitted changes (measured as it is)
    python: str
    import_dir: Path  # holds the perfsuite_plugins link to root/plugins

    def env(self) -> dict[str, str]:
        """The environment of this side's processes: its tree's code first on the import path."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.root), str(self.import_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        return env

    def describe(self) -> str:
        what = f"{self.ref} ({self.commit[:12]})" if self.ref else f"the working tree ({self.commit[:12]}"
        if not self.ref:
            what += ", with uncommitted changes, measured as they are)" if self.dirty else ")"
        return f"{self.side}: {what}, python {self.python}"

    def to_dict(self) -> dict:
        return {"ref": self.ref, "commit": self.commit, "dirty": self.dirty, "python": self.python}


class Trees:
    """`with Trees(repo, base_ref, head_ref, base_python, head_python) as (base, head):` makes the
    worktrees in a new temporary folder and removes them (and the folder) on the way out, also on
    Ctrl-C or an error."""

    def __init__(self, repo: Path, base_ref: str, head_ref: str | None, base_python: str, head_python: str) -> None:
        self.repo = Path(git("rev-parse", "--show-toplevel", cwd=repo))
        self.base_ref, self.head_ref = base_ref, head_ref
        self.pythons = {"base": base_python, "head": head_python}
        self.folder: Path | None = None
        self._worktrees: list[Path] = []

    def _commit(self, ref: str, side: str) -> str:
        try:
            return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=self.repo)
        except UsageError:
            raise UsageError(
                f"--{side} {ref}: no such commit, branch or tag in {self.repo} "
                "(git log --oneline and git branch -a list them; fetch it first if it is remote)"
            ) from None

    def _checkout(self, side: str, ref: str) -> Tree:
        commit = self._commit(ref, side)
        root = self.folder / side
        git("worktree", "add", "--detach", "--quiet", str(root), commit, cwd=self.repo)
        self._worktrees.append(root)
        return self._tree(side, root, ref, commit, dirty=False)

    def _tree(self, side: str, root: Path, ref: str | None, commit: str, dirty: bool) -> Tree:
        if not (root / "perfsuite" / "plugin.py").is_file():
            raise UsageError(
                f"--{side} {ref or '(working tree)'}: {commit[:12]} has no perfsuite/plugin.py: not a perfsuite "
                "project tree; choose a commit of this project"
            )
        if not (root / "perfsuite" / "ab" / "worker.py").is_file():
            raise UsageError(
                f"--{side} {ref}: {commit[:12]} predates perfsuite ab (no perfsuite/ab/worker.py): its servers "
                "cannot be run side by side; choose a newer base, or gate against stored baselines"
            )
        import_dir = self.folder / f"{side}-imports"
        import_dir.mkdir()
        (import_dir / "perfsuite_plugins").symlink_to(root / "plugins", target_is_directory=True)
        return Tree(side, root, ref, commit, dirty, self.pythons[side], import_dir)

    def __enter__(self) -> tuple[Tree, Tree]:
        self.folder = Path(tempfile.mkdtemp(prefix="perfsuite-ab-"))
        try:
            base = self._checkout("base", self.base_ref)
            if self.head_ref is not None:
                head = self._checkout("head", self.head_ref)
            else:
                commit = git("rev-parse", "HEAD", cwd=self.repo)
                dirty = bool(git("status", "--porcelain", "--untracked-files=no", cwd=self.repo))
                head = self._tree("head", self.repo, None, commit, dirty)
            return base, head
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the worktrees (git forgets them) and the temporary folder."""
        for root in self._worktrees:
            with contextlib.suppress(UsageError):  # else removed below, and prune makes git forget it
                git("worktree", "remove", "--force", str(root), cwd=self.repo)
        self._worktrees.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        with contextlib.suppress(UsageError):
            git("worktree", "prune", cwd=self.repo)
