"""HTML: visible text only (no script, style, navigation or page chrome), one section per h1-h6 with its heading
path."""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from ingest.document import LoadedDocument
from ingest.loaders.headings import Heading, sections_at_headings
from ingest.loaders.text import decode_text
from rag_app.language import TABLE_CELLS

EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})

_DROPPED = ["script", "style", "nav", "noscript", "template", "svg", "iframe"]
# The page's chrome, as ARIA maps it to landmarks: a header, footer or aside outside any article, aside, main, nav
# or section is the site's banner, contentinfo or complementary box, not the page's content, and so is an element
# its author gave one of those roles. A saved product page otherwise answered "How do I reset the router?" with
# its footer's "Copyright 2026 Nimbus Networks." A page-level header that holds a heading is kept: small pages put
# their title there.
_CHROME = ["header", "footer", "aside"]
_CHROME_ROLES = ["banner", "contentinfo", "complementary", "navigation", "search"]
_SECTIONING = frozenset({"article", "aside", "main", "nav", "section"})
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = _HEADINGS | {
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "ol", "p",
    "pre", "section", "summary", "table", "tr", "ul",
}
_HEADING_TAG = re.compile(r"<(h[1-6])\b", re.IGNORECASE)


def load_html(path: Path, data: bytes) -> LoadedDocument:
    """Sections start at their heading tag's place in the file; lines inside a section are extracted lines."""
    source = decode_text(data)
    soup = BeautifulSoup(source, "lxml")
    places = _heading_places(soup, source)
    for tag in soup.find_all(_DROPPED):
        tag.decompose()
    _drop_page_chrome(soup)
    _name_table_cells(soup)
    lines, headings, tags = _extract(soup.body or soup)
    text = "\n".join(lines)
    sections = sections_at_headings(text, headings)
    starts = {heading.line + 1: places.get(id(tag)) for heading, tag in zip(headings, tags, strict=True)}
    for section in sections:
        place = starts.get(section.start_line)
        if place is not None:
            section.start_char = place
            section.start_line = source.count("\n", 0, place) + 1
    return LoadedDocument(path, "html", sections)


def _drop_page_chrome(soup: BeautifulSoup) -> None:
    """Remove elements with a chrome role, and the page-level footer, sidebars and banner (unless it holds a
    heading); on a page with a main landmark, everything outside it but a banner's heading (`_keep_main`)."""
    _keep_main(soup)
    for tag in soup.find_all(attrs={"role": _CHROME_ROLES}):
        if not tag.decomposed:
            tag.decompose()
    for tag in soup.find_all(_CHROME):
        if tag.decomposed or any(parent.name in _SECTIONING for parent in tag.parents):
            continue
        if tag.name == "header" and tag.find(sorted(_HEADINGS)) is not None:
            continue
        tag.decompose()


def _keep_main(soup: BeautifulSoup) -> None:
    """The main element (or role="main") is the page's content by definition: what lies outside it goes, except a
    banner that holds a heading. A Read the Docs page keeps its footer ("© Copyright ... Built with Sphinx") inside
    a section beside its role="main" content, where the page-level rule does not reach it."""
    main = soup.find("main") or soup.find(attrs={"role": "main"})
    node = main
    while node is not None and node.parent is not None and node.name != "body":
        for sibling in list(node.parent.children):
            titled = isinstance(sibling, Tag) and sibling.name == "header" and sibling.find(sorted(_HEADINGS))
            if sibling is not node and not titled:
                sibling.extract()
        node = node.parent


def _name_table_cells(soup: BeautifulSoup) -> None:
    """Below a header row (every cell a th), prefix each cell with its column's name, as CSV rows are read
    ("Feature: Warranty | Value: 3 years"), and drop the header row. Column spans are followed; a cell in a column
    without a name is left."""
    for table in soup.find_all("table"):
        rows = [row for row in table.find_all("tr") if row.find_parent("table") is table]
        header = rows[0].find_all(["td", "th"], recursive=False) if len(rows) > 1 else []  # names need data rows
        if not header or any(cell.name != "th" for cell in header):
            continue
        names = [name for cell in header for name in [" ".join(cell.get_text(" ").split())] * _span(cell)]
        for row in rows[1:]:
            column = 0
            for cell in row.find_all(["td", "th"], recursive=False):
                name = names[column] if column < len(names) else ""
                if name and cell.get_text().strip():
                    cell.insert(0, NavigableString(f"{name}: "))
                column += _span(cell)
        rows[0].decompose()  # its names are in every row below; alone it stated nothing an answer could use


def _span(cell: Tag) -> int:
    value = str(cell.get("colspan", "1"))
    return max(int(value), 1) if value.isdigit() else 1


def _heading_places(soup: BeautifulSoup, source: str) -> dict[int, int]:
    """Character offset of each heading tag in the source, pairing tags and `<hN` matches in order."""
    matches = iter(_HEADING_TAG.finditer(source))
    places = {}
    for tag in soup.find_all(sorted(_HEADINGS)):
        match = next((m for m in matches if m.group(1).lower() == tag.name), None)
        if match is None:
            break
        places[id(tag)] = match.start()
    return places


def _extract(root: Tag) -> tuple[list[str], list[Heading], list[Tag]]:
    """Lines of visible text (one per block element, table rows as "a | b"), and where headings start."""
    lines: list[str] = []
    headings: list[Heading] = []
    heading_tags: list[Tag] = []
    buffer: list[str] = []
    block: Tag | None = None
    cell: Tag | None = None

    def flush() -> None:
        if block is not None and block.name == "pre":
            lines.extend(line.rstrip() for line in "".join(buffer).strip("\n").split("\n"))
        elif line := " ".join("".join(buffer).split()):
            lines.append(line)
        buffer.clear()

    for node in root.descendants:
        if isinstance(node, Tag):
            if node.name == "br":
                flush()
            continue
        if not isinstance(node, NavigableString) or isinstance(node, PreformattedString):
            continue
        node_block, node_cell = _context(node)
        if node_block is not block:
            flush()
            block, cell = node_block, node_cell
            title = _heading_title(block)
            if title:
                headings.append(Heading(len(lines), int(block.name[1]), title))
                heading_tags.append(block)
        elif node_cell is not cell:
            buffer.append(TABLE_CELLS)
            cell = node_cell
        buffer.append(str(node))
    flush()
    return lines, headings, heading_tags


def _heading_title(block: Tag | None) -> str:
    if block is None or block.name not in _HEADINGS:
        return ""
    return " ".join(block.get_text(" ").split())


def _context(node: NavigableString) -> tuple[Tag | None, Tag | None]:
    """The nearest block element around `node`, and the table cell it sits in, if any."""
    cell = None
    for parent in node.parents:
        if parent.name in ("td", "th") and cell is None:
            cell = parent
        if parent.name in _BLOCKS:
            return parent, cell
    return None, cell
