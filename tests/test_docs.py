"""The documentation holds together without building it: the README links to
the pages, every relative link and image in the README and in docs/ points
at a file (and a heading) that exists, every page is in the table of
contents, the API reference names every public name, and the first example
runs as written.

CI also builds the pages with Sphinx, warnings as errors (`make docs`), which
checks the same links again and every docstring the reference reads; these
tests need no Sphinx, so they run with the README's test command.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import reactor
import reactor.aio

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The Markdown without its code: links inside code are not links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub (and MyST, with myst_heading_anchors) gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in _HEADING.findall(_FENCE.sub("", path.read_text()))}


def relative_links(path: Path) -> list[str]:
    return [target for target in _LINK.findall(prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked here


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def toctree_entries() -> list[str]:
    index = (DOCS / "index.md").read_text()
    entries: list[str] = []
    for block in re.findall(r"```\{toctree\}\n(.*?)```", index, re.S):
        entries += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith(":")]
    return entries


@pytest.mark.parametrize("path", [README, *pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_something_that_exists(path: Path) -> None:
    missing = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        where = (path.parent / file_part).resolve() if file_part else path
        if not where.exists() and where.is_relative_to(RESULTS) and not RESULTS.exists():
            continue  # an sdist: MANIFEST.in prunes the saved results, which the bench page shows
        if not where.exists():
            missing.append(f"{target}: no {where.relative_to(ROOT) if where.is_relative_to(ROOT) else where}")
        elif fragment and where.suffix == ".md" and fragment not in anchors(where):
            missing.append(f"{target}: no heading #{fragment} in {where.relative_to(ROOT)}")
        elif not where.resolve().is_relative_to(ROOT):
            missing.append(f"{target}: outside the repository")
    assert not missing, f"{path.relative_to(ROOT)} links to what is not there:\n" + "\n".join(missing)


def test_the_readme_links_to_every_page() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(README)}
    unlinked = [str(page.relative_to(ROOT)) for page in pages() if page.resolve() not in linked]
    assert not unlinked, f"the README does not link to {unlinked}"


def test_every_page_is_in_the_table_of_contents_and_every_entry_is_a_page() -> None:
    entries = toctree_entries()
    names = {page.stem for page in pages()} - {"index"}
    assert sorted(entries) == sorted(names), (entries, names)


def documented(page: str) -> set[str]:
    text = (DOCS / page).read_text()
    return set(re.findall(r"^\.\. (?:auto)?(?:class|function|exception|data)::\s+([\w.]+)", text, re.M))


def test_the_api_reference_names_every_public_name() -> None:
    names = {f"reactor.{name}" for name in reactor.__all__}
    assert names <= documented("api.md"), f"not in docs/api.md's reference: {sorted(names - documented('api.md'))}"


def test_the_aio_reference_names_every_public_name() -> None:
    names = {f"reactor.aio.{name}" for name in [*reactor.aio.__all__, "EventLoopPolicy"]}
    assert names <= documented("aio.md"), f"not in docs/aio.md's reference: {sorted(names - documented('aio.md'))}"


def test_the_first_server_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # the first python block after the "A first server" heading
    page = (DOCS / "getting-started.md").read_text().split("## A first server", 1)[1]
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    exec(compile(code, "docs/getting-started.md", "exec"), {})
    out = capsys.readouterr().out
    assert "connected ('127.0.0.1'," in out
    assert "ListenerStats(accepted=1," in out


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    # the checker itself: a link to a missing page, a missing heading, and code that is not a link
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section: `here`\n\n[ok](#a-section-here) [gone](nowhere.md) "
                    "[bad](#no-such) `[code](not-a-link.md)`\n\n```\n[fenced](not-either.md)\n```\n")
    assert relative_links(page) == ["#a-section-here", "nowhere.md", "#no-such"]
    assert anchors(page) == {"title", "a-section-here"}
