"""The README's Python example runs as written (so the tour stays true)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_api_tour_example_runs(capsys):
    # the first python block after the "API tour" heading
    tour = README.read_text().split("## API tour", 1)[1]
    code = re.search(r"```python\n(.*?)```", tour, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "connected ('127.0.0.1'," in out
    assert "ListenerStats(accepted=1," in out


def test_readme_names_the_commands_ci_and_users_run():
    text = README.read_text()
    assert "python -m reactor bench accept" in text
    assert "python -m pytest" in text
