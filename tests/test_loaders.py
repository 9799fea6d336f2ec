"""Loaders on real files written to tmp_path: sections, pages, headings, positions, and every bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ingest.document import LoaderError
from ingest.loaders import SUPPORTED_EXTENSIONS, load_file
from tests.fixtures_files import write_docx, write_encrypted_pdf, write_pdf


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_supported_extensions_cover_the_documented_formats() -> None:
    wanted = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".docx", ".csv", ".json", ".jsonl"}
    code = {".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".go", ".rs", ".c", ".cc", ".cpp", ".h", ".hpp"}
    more = {".cs", ".rb", ".php", ".sh", ".sql", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".xml"}
    assert wanted | code | more <= SUPPORTED_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in SUPPORTED_EXTENSIONS)


def test_plain_text_is_one_section_with_newlines_normalised(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "notes.TXT", "first line\r\nsecond line\r\n"))
    assert doc.kind == "text"
    assert [(s.text, s.start_line, s.start_char, s.page, s.heading) for s in doc.sections] == [
        ("first line\nsecond line\n", 1, 0, None, None)
    ]


def test_markdown_sections_follow_atx_headings_with_paths_and_positions(tmp_path: Path) -> None:
    source = (
        "Preamble text.\n\n"
        "# Guide\n\nIntro.\n\n"
        "## Install\n\nGeneral steps.\n\n"
        "### Linux ###\n\nRun apt.\n\n```sh\n# not a heading\n```\n\n"
        "## Usage\nUse it.\n"
    )
    doc = load_file(write(tmp_path, "guide.md", source))
    assert doc.kind == "markdown"
    assert [s.heading for s in doc.sections] == [
        None, "Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Usage"
    ]
    for section in doc.sections:
        assert source[section.start_char :].startswith(section.text)
        assert section.start_line == source[: section.start_char].count("\n") + 1
    linux = doc.sections[3]
    assert linux.start_line == line_of(source, "### Linux")
    assert "# not a heading" in linux.text


def test_markdown_heading_without_body_is_folded_into_the_next_section(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "a.md", "# Title\n\n## Part\nBody.\n"))
    assert [(s.heading, s.start_line, s.text) for s in doc.sections] == [
        ("Title > Part", 1, "# Title\n\n## Part\nBody.\n")
    ]


def test_rst_titles_become_sections_with_levels_in_order_of_appearance(tmp_path: Path) -> None:
    source = "=====\nTitle\n=====\n\nIntro.\n\nFirst\n-----\n\nBody one.\n\nSecond\n------\n\nBody two.\n"
    doc = load_file(write(tmp_path, "doc.rst", source))
    assert doc.kind == "rst"
    assert [(s.heading, s.start_line) for s in doc.sections] == [
        ("Title", 1),
        ("Title > First", line_of(source, "First")),
        ("Title > Second", line_of(source, "Second")),
    ]


def test_html_keeps_visible_text_and_heading_paths_without_tags(tmp_path: Path) -> None:
    source = (
        "<!DOCTYPE html>\n<html><head><title>T</title><style>p {color: red}</style></head>\n<body>\n"
        "<nav><h2>Menu</h2><a href='/'>Home link</a></nav>\n"
        "<p>Before any heading.</p>\n"
        "<h1>Manual</h1>\n<p>Read <b>this</b> first.<br>Then that.</p>\n"
        "<script>var secret = 1;</script>\n"
        "<h2>Setup</h2>\n<ul><li>One</li><li>Two</li></ul>\n"
        "<table><tr><th>Key</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>\n"
        "<pre>x = 1\n    y = 2</pre>\n<!-- hidden comment -->\n</body></html>\n"
    )
    doc = load_file(write(tmp_path, "page.html", source))
    assert doc.kind == "html"
    assert [s.heading for s in doc.sections] == [None, "Manual", "Manual > Setup"]
    text = doc.text
    for hidden in ("color: red", "secret", "Menu", "Home link", "hidden comment", "<", ">"):
        assert hidden not in text
    assert "Read this first.\nThen that." in text
    assert "Key: a | Value: 1" in text and "Key | Value" not in text
    assert "x = 1\n    y = 2" in text
    setup = doc.sections[2]
    assert setup.start_line == line_of(source, "<h2>Setup")
    assert source[setup.start_char :].startswith("<h2>Setup")


def test_html_drops_the_pages_chrome_but_keeps_what_the_content_holds(tmp_path: Path) -> None:
    """A saved web page: the site's banner, sidebar, footer and role-marked boxes are not its content; an article's
    own footer, a note inside the main content and a banner that holds the page's title are."""
    source = (
        "<html><body>\n<header><a href='/'>Nimbus</a> Shop Support Login</header>\n"
        "<div role='search'>Search the site</div>\n"
        "<main><h1>Router X2</h1>\n<p>Hold the reset button for 15 seconds.</p>\n"
        "<aside>Note: resetting erases the Wi-Fi password.</aside>\n"
        "<article><p>Review: fast and quiet.</p><footer>Posted by Ada</footer></article></main>\n"
        "<aside><h2>Related products</h2><p>Router X1</p></aside>\n"
        "<div role='contentinfo'>Imprint and legal notice</div>\n"
        "<footer>Copyright 2026 Nimbus Networks. Privacy policy.</footer>\n</body></html>\n"
    )
    text = load_file(write(tmp_path, "router.html", source)).text
    for chrome in ("Shop Support Login", "Search the site", "Related products", "Router X1", "Imprint", "Copyright"):
        assert chrome not in text
    for content in ("Hold the reset button for 15 seconds.", "resetting erases the Wi-Fi password", "Posted by Ada"):
        assert content in text
    titled = load_file(write(tmp_path, "titled.html", "<body><header><h1>Handbook</h1></header><p>Welcome.</p>"
                                                      "<footer>Page 1</footer></body>"))
    assert [section.heading for section in titled.sections] == ["Handbook"]
    assert "Page 1" not in titled.text
    themed = load_file(write(tmp_path, "install.html", (  # a Read the Docs page: its footer sits beside role=main
        "<body><nav>Menu</nav><section class='wy-nav-content-wrap'><div role='navigation'>Docs / Install</div>"
        "<div role='main'><h1>Installing</h1><p>Run pip install foo.</p></div>"
        "<footer><p>Previous Next</p><p>Copyright 2024, Foo Team. Built with Sphinx.</p></footer></section>"
        "<p>Stray text after the layout.</p></body>")))
    assert themed.text == "Installing\nRun pip install foo."


def test_pdf_has_one_section_per_page_with_text(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "book.pdf", [["Apples are red.", "Second line."], [], ["Pears are green."]])
    doc = load_file(path)
    assert doc.kind == "pdf"
    assert [s.page for s in doc.sections] == [1, 3]
    assert "Apples are red." in doc.sections[0].text
    assert "Second line." in doc.sections[0].text
    assert "Pears are green." in doc.sections[1].text
    assert all(s.start_line == 1 and s.start_char == 0 for s in doc.sections)


def test_pdf_running_headers_and_page_numbers_are_left_out_and_lines_hold(tmp_path: Path) -> None:
    pages = [["Acme Employee Handbook 2026 - Confidential", f"Section {number}: {body}", f"Page {number} of 4"]
             for number, body in enumerate(["Core hours are 10 to 16.", "Holidays: 28 days a year.",
                                            "Tell your manager before 9:30.", "Laptops are returned on exit."], 1)]
    doc = load_file(write_pdf(tmp_path / "handbook.pdf", pages))
    assert [section.page for section in doc.sections] == [1, 2, 3, 4]
    for section, lines in zip(doc.sections, pages, strict=True):
        assert "Confidential" not in section.text and "Page" not in section.text
        assert section.text.split("\n")[1] == lines[1], "the body stays on its own line of the page"
    short = load_file(write_pdf(tmp_path / "letter.pdf", pages[:2]))
    assert all("Confidential" in section.text for section in short.sections), "two pages say too little to tell"


def test_pdf_encrypted_with_a_user_password_is_refused(tmp_path: Path) -> None:
    plain = write_pdf(tmp_path / "plain.pdf", [["Secret plans."]])
    locked = write_encrypted_pdf(plain, tmp_path / "locked.pdf", user_password="letmein")
    with pytest.raises(LoaderError, match=r"^encrypted PDF: decrypt it first$"):
        load_file(locked)


def test_pdf_with_only_an_owner_password_still_loads(tmp_path: Path) -> None:
    plain = write_pdf(tmp_path / "plain.pdf", [["Open plans."]])
    owner_only = write_encrypted_pdf(plain, tmp_path / "owner.pdf", user_password="")
    assert "Open plans." in load_file(owner_only).text


@pytest.mark.parametrize("content", [b"%PDF-1.4\nnot really a pdf\n", b"plain words, no pdf here"])
def test_corrupt_pdf_is_reported(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(LoaderError, match=r"^corrupt PDF"):
        load_file(write(tmp_path, "broken.pdf", content))


def test_truncated_pdf_is_reported(tmp_path: Path) -> None:
    data = write_pdf(tmp_path / "whole.pdf", [["Some text."]]).read_bytes()
    with pytest.raises(LoaderError, match=r"^corrupt PDF"):
        load_file(write(tmp_path, "half.pdf", data[: len(data) // 2]))


def test_pdf_without_text_says_to_run_ocr(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="OCR"):
        load_file(write_pdf(tmp_path / "scan.pdf", [[]]))


def test_docx_paragraphs_headings_and_tables(tmp_path: Path) -> None:
    doc = load_file(write_docx(tmp_path / "report.docx"))
    assert doc.kind == "docx"
    assert [(s.heading, s.start_line) for s in doc.sections] == [
        ("Quarterly Report", 1),
        ("Quarterly Report > Revenue", 3),
        ("Quarterly Report > Revenue > By region", 5),
        ("Quarterly Report > Costs", 8),
    ]
    assert doc.sections[1].text.strip() == "Revenue\nRevenue grew by twelve percent."
    assert "Region | Growth\nNorth | 15%" in doc.sections[2].text
    assert "成本保持稳定。" in doc.sections[3].text
    full = "".join(s.text for s in doc.sections)
    assert all(full[s.start_char :].startswith(s.text) for s in doc.sections)


def test_table_rows_under_a_header_row_name_their_columns(tmp_path: Path) -> None:
    """A data row read alone does not say which cell is the date asked for: below a header row each cell carries
    its column's name, in DOCX (a marked, bold or three-column label row) and HTML (a row of th cells), and the
    header row itself is gone (a blank line in DOCX, whose line numbers stay one per row); a two-column table
    without marks is read as key | value pairs."""
    import docx

    document = docx.Document()
    milestones = document.add_table(rows=3, cols=3)
    for row, cells in enumerate([["Milestone", "Owner", "Due"], ["Schema frozen", "Priya Nair", "30 April"],
                                 ["Dry-run migration", "Tom Becker", "15 July"]]):
        for column, text in enumerate(cells):
            milestones.cell(row, column).text = text
    pairs = document.add_table(rows=2, cols=2)
    for row, cells in enumerate([["Ports", "4 x 2.5 GbE"], ["Warranty", "3 years"]]):
        for column, text in enumerate(cells):
            pairs.cell(row, column).text = text
    marked = document.add_table(rows=2, cols=2)
    for row, cells in enumerate([["Setting", "Default"], ["port", "7860"]]):
        for column, text in enumerate(cells):
            marked.cell(row, column).paragraphs[0].add_run(text).bold = row == 0
    document.save(str(tmp_path / "plan.docx"))
    lines = load_file(tmp_path / "plan.docx").text.split("\n")
    assert lines == ["", "Milestone: Schema frozen | Owner: Priya Nair | Due: 30 April",
                     "Milestone: Dry-run migration | Owner: Tom Becker | Due: 15 July",
                     "Ports | 4 x 2.5 GbE", "Warranty | 3 years", "", "Setting: port | Default: 7860"]
    html = ("<table><tr><th>Feature</th><th colspan='2'>Value</th></tr><tr><td>Ports</td><td>4</td><td>LAN</td></tr>"
            "</table><table><tr><th>Warranty</th><td>3 years</td></tr></table>")
    assert load_file(write(tmp_path, "spec.html", html)).text.split("\n") == [
        "Feature: Ports | Value: 4 | Value: LAN", "Warranty | 3 years"]
    alone = load_file(write(tmp_path, "alone.html", "<table><tr><th>Only</th><th>Header</th></tr></table>"))
    assert alone.text == "Only | Header", "a header row with no rows below keeps its text"


def test_corrupt_docx_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"^corrupt or unsupported DOCX"):
        load_file(write(tmp_path, "broken.docx", b"PK\x03\x04 not a real zip archive"))


def test_python_code_is_split_at_top_level_definitions(tmp_path: Path) -> None:
    source = (
        '"""Module."""\nimport os\n\n\n@decorator\ndef first():\n    return 1\n\n\n'
        "class Second:\n    def method(self):\n        pass\n"
    )
    doc = load_file(write(tmp_path, "mod.py", source))
    assert doc.kind == "code"
    assert [(s.heading, s.start_line) for s in doc.sections] == [
        (None, 1),
        ("def first", line_of(source, "@decorator")),
        ("class Second", line_of(source, "class Second")),
    ]


def test_other_code_is_kept_whole(tmp_path: Path) -> None:
    source = "function add(a, b) {\n  return a + b;\n}\n"
    doc = load_file(write(tmp_path, "add.js", source))
    assert (doc.kind, [s.text for s in doc.sections]) == ("code", [source])


def test_csv_rows_become_column_value_lines_on_their_file_lines(tmp_path: Path) -> None:
    source = 'name,city,note\nAda,London,first\nBob,"Paris","two\nlines"\nCy,Rome,\n'
    doc = load_file(write(tmp_path, "people.csv", source))
    assert doc.kind == "csv"
    (section,) = doc.sections
    assert section.start_line == 2
    assert source[section.start_char :].startswith("Ada,")
    lines = section.text.split("\n")
    assert lines[0] == "name: Ada; city: London; note: first"
    assert lines[1] == "name: Bob; city: Paris; note: two lines"
    assert lines[3] == "name: Cy; city: Rome"
    assert section.start_line + 3 == line_of(source, "Cy,")


def test_semicolon_csv_is_sniffed(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "eu.csv", "produit;prix\npain;1,20\nlait;0,95\n"))
    assert doc.sections[0].text.split("\n")[0] == "produit: pain; prix: 1,20"


def test_minified_json_becomes_one_line_per_member_and_record(tmp_path: Path) -> None:
    value = {"title": "你好", "tags": ["a", "b"], "meta": {"owner": None, "limits": {"daily": 3}},
             "rotation": [{"week": "W10", "primary": "Tom"}, {"week": "W11", "primary": "Priya", "days": [1, 2]}]}
    doc = load_file(write(tmp_path, "data.json", json.dumps(value)))
    assert doc.kind == "json"
    assert doc.text.split("\n") == ["title: 你好", "tags: a, b", "meta.owner: null", "meta.limits.daily: 3",
                                    "rotation 1: week: W10; primary: Tom",
                                    "rotation 2: week: W11; primary: Priya; days: 1, 2"]
    records = load_file(write(tmp_path, "list.json", json.dumps([{"q": "what?"}, {"q": "why?"}, 3])))
    assert records.text.split("\n") == ["q: what?", "q: why?", "3"]


def test_pretty_json_reads_as_members_and_records_on_the_files_own_lines(tmp_path: Path) -> None:
    value = {"question": "什么是向量检索？", "tags": ["a", "b"],
             "rotation": [{"week": "W10", "primary": "Tom"}, {"week": "W11", "primary": "Priya"}], "empty": {}}
    for indent in (2, 4):
        source = json.dumps(value, indent=indent, ensure_ascii=False)
        lines = load_file(write(tmp_path, "qa.json", source)).text.split("\n")
        assert len(lines) == source.count("\n") + 1
        said = {number: line for number, line in enumerate(lines, 1) if line}
        assert said == {2: "question: 什么是向量检索？", 3: "tags: a, b", 8: "rotation 1: week: W10; primary: Tom",
                        12: "rotation 2: week: W11; primary: Priya", 17: "empty: "}
        for number, line in said.items():  # each on the file line where its member or record starts
            assert source.split("\n")[number - 1].strip().startswith(('"' + line.split(":")[0], "{"))


def test_json_laid_out_otherwise_stays_as_written(tmp_path: Path) -> None:
    source = '{"a": [1,\n 2], "b": {"c": 3}}'
    assert load_file(write(tmp_path, "odd.json", source)).text == source


def test_invalid_json_is_kept_as_text(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "bad.json", '{"a": 1,\n oops'))
    assert doc.text == '{"a": 1,\n oops'


def test_jsonl_records_become_readable_lines(tmp_path: Path) -> None:
    source = '{"q": "what?", "a": "that", "n": 3}\n\nnot json\n[1, 2]\n'
    doc = load_file(write(tmp_path, "qa.jsonl", source))
    assert doc.kind == "jsonl"
    assert doc.text.split("\n") == ["q: what?; a: that; n: 3", "", "not json", "[1, 2]", ""]


def test_unknown_extension_with_text_is_loaded_as_text(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "README", "Just some words.\n"))
    assert (doc.kind, doc.text) == ("text", "Just some words.\n")


@pytest.mark.parametrize("name", ["blob.bin", "fake.txt", "image.weird"])
def test_binary_content_is_refused(tmp_path: Path, name: str) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    with pytest.raises(LoaderError, match=r"^binary file, not text$"):
        load_file(write(tmp_path, name, png))


def test_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"^empty file$"):
        load_file(write(tmp_path, "empty.md", b""))


def test_whitespace_only_file_has_no_text(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"^no text found$"):
        load_file(write(tmp_path, "blank.txt", " \n\n\t\n"))


def test_file_over_the_size_limit_is_refused_with_advice(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", b"a" * (2 * 1024 * 1024 + 100 * 1024))
    with pytest.raises(LoaderError) as caught:
        load_file(path, max_bytes=1024 * 1024)
    assert str(caught.value) == "file is 2.1 MB, over the 1.0 MB limit; raise --max-file-mb"
    assert load_file(path, max_bytes=3 * 1024 * 1024).kind == "text"


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match=r"^file not found$"):
        load_file(tmp_path / "nope.txt")


def test_directory_named_like_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").mkdir()
    with pytest.raises(LoaderError, match=r"^not a regular file"):
        load_file(tmp_path / "x.txt")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(LoaderError, match=r"^not a regular file"):
        load_file(tmp_path / "pipe.txt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.txt", "hidden")
    path.chmod(0)
    try:
        with pytest.raises(LoaderError, match=r"^permission denied"):
            load_file(path)
    finally:
        path.chmod(0o600)


def test_legacy_chinese_encodings_are_decoded(tmp_path: Path) -> None:
    simplified = "请在安装之前阅读说明文档。如果有问题，请联系管理员。"
    traditional = "這是一個測試文件，用來檢查繁體中文的編碼是否正確。"
    assert load_file(write(tmp_path, "gbk.txt", simplified.encode("gbk"))).text == simplified
    assert load_file(write(tmp_path, "big5.md", traditional.encode("big5"))).text == traditional


def test_undecodable_text_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="UTF-8"):
        load_file(write(tmp_path, "odd.txt", b"\xef\xbb\xbfok then \xff\xfe\xfa broken"))
