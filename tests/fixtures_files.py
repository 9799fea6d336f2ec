"""Build real PDF and DOCX files at test time, so no binary fixtures live in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import docx
from pypdf import PdfWriter
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

CHINESE_FONT = "STSong-Light"
HAN = re.compile(r"[\u4e00-\u9fff]")


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """One PDF page per entry, each line drawn on its own row; an empty entry makes a blank page. Chinese text is
    drawn in reportlab's built-in CID font (no font file needed)."""
    pdf = canvas.Canvas(str(path))
    chinese = any(HAN.search(line) for lines in pages for line in lines)
    if chinese:
        pdfmetrics.registerFont(UnicodeCIDFont(CHINESE_FONT))
    for lines in pages:
        if chinese:
            pdf.setFont(CHINESE_FONT, 12)
        for row, line in enumerate(lines):
            pdf.drawString(72, 720 - 20 * row, line)
        pdf.showPage()
    pdf.save()
    return path


def write_encrypted_pdf(source: Path, path: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password, owner_password="owner-secret")
    writer.write(path)
    return path


def write_docx(path: Path) -> Path:
    """A report with a title, two heading levels, body paragraphs and a table."""
    document = docx.Document()
    document.add_paragraph("Quarterly Report", style="Title")
    document.add_paragraph("Prepared by the data team.")
    document.add_heading("Revenue", level=1)
    document.add_paragraph("Revenue grew by twelve percent.")
    document.add_heading("By region", level=2)
    table = document.add_table(rows=2, cols=2)
    for row, (name, value) in enumerate([("Region", "Growth"), ("North", "15%")]):
        table.cell(row, 0).text = name
        table.cell(row, 1).text = value
    document.add_heading("Costs", level=1)
    document.add_paragraph("成本保持稳定。")
    document.save(str(path))
    return path
