"""The README is the front page: it names the commands CI and users run, and
its test command is the one `.ci/run` runs. (Its first example moved to
docs/getting-started.md, where tests/test_docs.py runs it; the links to the
pages are checked there too.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_readme_names_the_commands_ci_and_users_run():
    text = README.read_text()
    assert "python -m reactor bench accept" in text
    assert "python -m pytest" in text


def test_the_readme_test_command_is_what_ci_runs():
    # the install-lint-test line: a test extra added to one and not the other
    # would have CI skip tests that a reader's run executes, or the reverse
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text().split("The tests", 1)[1], re.S)
    line = blocks[0].strip()
    command = line[line.index("pip install"):]
    assert command.endswith("ruff check . && python -m pytest"), command
    assert command in (ROOT / ".ci" / "run").read_text(), f"{command!r} is not what .ci/run runs"
