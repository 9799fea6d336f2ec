"""Build real PDF and DOCX files at test time, so no binary fixtures live in the repository."""

from __future__ import annotations

from pathlib import Path

import docx
from pypdf import PdfWriter
from reportlab.pdfgen import canvas


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """One PDF page per entry, each line drawn on its own row; an empty entry makes a blank page."""
    pdf = canvas.Canvas(str(path))
    for lines in pages:
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
