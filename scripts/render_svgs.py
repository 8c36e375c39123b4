"""Render `controller plan`, `controller status` and `controller runs show` as SVG pictures.

A scratch repository gets a small desired state (two lanes, an agent, a thread, a workflow
with a stand-in agent); the real commands run there with ``--color always``, and rich turns
their output into SVG (``Console(record=True).save_svg``). Paths are shown as in the docs
(``/tmp/docs/app``). Run it through ``scripts/render-svgs [--out DIR]``; the pictures go to
``docs/images/`` by default. Everything it starts is stopped, and the scratch folder deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
SHOWN = "/tmp/docs/app"  # noqa: S108 - the repository's path in the pictures, never used

DESIRED = {
    "workspace.yaml": """\
apiVersion: lanes/v1
kind: Workspace
metadata: {name: app}
spec: {tmuxSocket: doc-app}
""",
    "lanes.yaml": """\
apiVersion: lanes/v1
kind: Lane
metadata: {name: auth}
---
apiVersion: lanes/v1
kind: Lane
metadata: {name: billing}
spec: {branch: feature/billing}
---
apiVersion: lanes/v1
kind: Binding
metadata: {name: auth-agent}
spec:
  lane: auth
  participant: agent-1
  command: [bash, --noprofile, --norc, -i]
  env: {API_URL: "http://localhost:8080"}
---
apiVersion: lanes/v1
kind: Thread
metadata: {name: review}
spec: {participants: [agent-1, human]}
""",
    "release.yaml": """\
apiVersion: lanes/v1
kind: ModelCatalog
metadata: {name: models}
spec:
  models:
    - {name: sonnet, contextWindow: 200000, inputPerMTok: 3.0, outputPerMTok: 15.0}
---
apiVersion: lanes/v1
kind: Workflow
metadata: {name: release-notes}
spec:
  maxParallel: 2
  budget: {maxCostUsd: 5}
  tasks:
    - {name: changes, model: sonnet, command: [python3, agent.py, changes, "{prompt}"],
       prompt: "List the changes since v1.2", outputs: [changes.md]}
    - {name: credits, model: sonnet, command: [python3, agent.py, credits, "{prompt}"],
       prompt: "List who contributed since v1.2", outputs: [credits.md]}
    - {name: notes, dependsOn: [changes, credits], model: sonnet,
       command: [python3, agent.py, notes, "{prompt}"],
       prompt: "Write the release notes from the attached lists"}
""",
}

# The stand-in agent of the user guide's section 26: writes a file, prints Claude-style JSON.
AGENT = """\
import json, pathlib, sys

task, prompt = sys.argv[1], sys.argv[2]
pathlib.Path(f"{task}.md").write_text(f"# {task}\\n")
usage = {"input_tokens": len(prompt) // 4 + 1200, "output_tokens": 350}
print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                  "result": f"{task}: done", "total_cost_usd": 0.0123, "usage": usage}))
"""


class Scratch:
    """A repository in a scratch folder, with its own tmux folder and git identity."""

    def __init__(self, base: Path) -> None:
        self.repo = base / "app"
        self.tmux = base / "t"
        git_config = base / "gitconfig"
        git_config.write_text("[user]\n\tname = Ada\n\temail = ada@example.invalid\n")
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("CONTROLLER_", "LANE_"))}
        self.env = {
            **keep,
            "PATH": f"{Path(sys.executable).parent}:{keep.get('PATH', '/usr/bin:/bin')}",
            "GIT_CONFIG_GLOBAL": str(git_config),
            "GIT_CONFIG_NOSYSTEM": "1",
            "TMUX_TMPDIR": str(self.tmux),
            "NO_COLOR": "",
            "FORCE_COLOR": "",
        }

    def run(self, *argv: str, timeout: float = 300) -> str:
        """Run a program in the repository; its output (stdout and stderr)."""
        done = subprocess.run(
            argv,
            cwd=self.repo,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            timeout=timeout,
        )
        if done.returncode not in (0, 2):
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}")
        return done.stdout.replace(str(self.repo), SHOWN)

    def controller(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "controller", *args)


def _folder_as_long_as_shown() -> Path:
    """A new folder in the temporary folder whose ``app`` is as long a path as ``SHOWN`` (if
    it can be): the tables' columns stay aligned when the real path is replaced."""
    temporary = Path(tempfile.gettempdir())
    length = max(4, len(SHOWN) - len(f"{temporary}/") - len("/app"))
    while True:
        name = "".join(
            secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length)
        )
        with contextlib.suppress(FileExistsError):
            path = temporary / name
            path.mkdir(mode=0o700)
            return path


@contextlib.contextmanager
def scratch() -> Iterator[Scratch]:
    """A scratch repository; its tmux server and processes are stopped afterwards."""
    base = _folder_as_long_as_shown()
    made = Scratch(base)
    try:
        made.repo.mkdir()
        made.tmux.mkdir()
        yield made
    finally:
        subprocess.run(
            ("tmux", "-L", "doc-app", "kill-server"),
            env=made.env,
            capture_output=True,
            check=False,
            timeout=10,
        )
        _stop_processes_under(base)
        shutil.rmtree(base, ignore_errors=True)


def _stop_processes_under(base: Path) -> None:
    """Kill what still runs from the scratch folder (task agents end by themselves)."""
    import psutil

    for proc in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            words = [*(proc.info["cmdline"] or ()), proc.info["cwd"] or ""]
            if proc.pid != os.getpid() and any(str(base) in word for word in words):
                proc.kill()


def outputs(repo: Scratch) -> dict[str, tuple[str, str]]:
    """The three commands' coloured outputs, by picture name (with the command shown)."""
    repo.run("git", "init", "-q", "-b", "main")
    (repo.repo / "agent.py").write_text(AGENT)
    repo.run("git", "add", "agent.py")
    repo.run("git", "commit", "-q", "-m", "stand-in agent")
    for name, text in DESIRED.items():
        (repo.repo / "desired").mkdir(exist_ok=True)
        (repo.repo / "desired" / name).write_text(text)
    shown: dict[str, tuple[str, str]] = {}
    shown["plan"] = ("controller plan", repo.controller("plan", "--color", "always"))
    repo.controller("--once")
    repo.controller("post", "review", "--as", "human", "Please review the login change.")
    shown["status"] = ("controller status", repo.controller("status", "--color", "always"))
    run = repo.controller("submit", "release-notes", "--name", "v1-3", "--wait").split()[0]
    command = f"controller runs show {run}"
    shown["runs-show"] = (command, repo.controller("runs", "show", run, "--color", "always"))
    return shown


def render(command: str, output: str, path: Path) -> None:
    """Save ``$ command`` and its output as an SVG terminal picture."""
    lines = output.rstrip("\n").splitlines()
    width = max(len(Text.from_ansi(line).plain) for line in [f"$ {command}", *lines]) + 2
    console = Console(
        record=True,
        file=io.StringIO(),  # recorded for the picture, not shown
        width=width,
        force_terminal=True,
        color_system="truecolor",
    )
    console.print(Text(f"$ {command}", style="bold"))
    console.print(Text.from_ansi(output.rstrip("\n")), soft_wrap=True)
    console.save_svg(str(path), title=command)


def main() -> None:
    parser = argparse.ArgumentParser(description="Render plan, status and runs show as SVG.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with scratch() as repo:
        shown = outputs(repo)
    for name, (command, output) in shown.items():
        render(command, output, args.out / f"{name}.svg")
        print(f"wrote {args.out / name}.svg")


if __name__ == "__main__":
    main()
