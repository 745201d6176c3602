#!/usr/bin/env python3
"""Fails when a link inside the manual or from the README leads nowhere.

Two kinds of documents are read:

- the built manual (`target/book/**/*.html`, from `mdbook build docs`): every `href` and `src`
  that is not absolute (`http:`, `https:`, `mailto:`, `//`) must name a file of the book, and a
  `#fragment` must be an `id` in that file (mdBook gives every heading one);
- the Markdown sources `README.md` and `docs/src/**/*.md`: every relative link target
  `[text](path)` must exist in the repository (the README links into `docs/src/`, which is
  what a reader on a forge sees).

Usage: tools/check-doc-links.py [BOOK_DIR] [REPO_ROOT]   (defaults: target/book, this repository)
Exit status: 0 every link resolves, 1 at least one does not (each printed as `file: link`),
2 the book is missing. Python 3 standard library only, no network.
"""

import html.parser
import pathlib
import re
import sys
import urllib.parse

EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
# [text](target) outside code: a fence or an inline code span is skipped before matching.
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


class Page(html.parser.HTMLParser):
    """The links and the ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.links = []
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            if name in ("href", "src"):
                self.links.append(value)


def read_page(path, cache):
    if path not in cache:
        page = Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def check_book(book):
    book = book.resolve()
    broken = []
    cache = {}
    for page_path in sorted(book.rglob("*.html")):
        page = read_page(page_path, cache)
        for link in page.links:
            if not link or EXTERNAL.match(link):
                continue
            target, _, fragment = link.partition("#")
            target = urllib.parse.unquote(target)
            if target == "":
                resolved = page_path
            elif target.startswith("/"):  # the site's root (mdBook's 404 page): the book's
                resolved = (book / target.lstrip("/")).resolve()
            else:
                resolved = (page_path.parent / target).resolve()
            if resolved.is_dir():
                resolved = resolved / "index.html"
            if not resolved.exists():
                broken.append(f"{page_path.relative_to(book)}: {link} (no such file)")
                continue
            if fragment and resolved.suffix == ".html":
                if urllib.parse.unquote(fragment) not in read_page(resolved, cache).ids:
                    broken.append(f"{page_path.relative_to(book)}: {link} (no such anchor)")
    return broken


def markdown_links(text):
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        yield from MARKDOWN_LINK.findall(line)


def check_sources(root):
    broken = []
    sources = [root / "README.md", *sorted((root / "docs" / "src").rglob("*.md"))]
    for source in sources:
        if not source.exists():
            continue
        for link in markdown_links(source.read_text(encoding="utf-8")):
            if EXTERNAL.match(link) or link.startswith("#"):
                continue
            target = urllib.parse.unquote(link.partition("#")[0])
            if not (source.parent / target).exists():
                broken.append(f"{source.relative_to(root)}: {link} (no such file)")
    return broken


def main():
    root = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else pathlib.Path(__file__).resolve().parent.parent
    book = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "target" / "book"
    if not (book / "index.html").exists():
        print(f"check-doc-links: no built book at {book} (run mdbook build docs first)", file=sys.stderr)
        return 2
    broken = check_book(book) + check_sources(root)
    for line in broken:
        print(f"broken link: {line}", file=sys.stderr)
    pages = len(list(book.rglob("*.html")))
    if broken:
        print(f"check-doc-links: {len(broken)} broken link(s)", file=sys.stderr)
        return 1
    print(f"check-doc-links: every internal link resolves ({pages} pages, README and docs/src)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
