"""Writes the formats_walk corpus (seven small files of the formats users bring: a PDF handbook, a saved product
page, DOCX meeting notes, a Chinese DOCX policy, a Python module, a CSV price list and a JSON export) into the
folder given (default: ./formats_walk_corpus). The files are made here, not stored, so no binary lives in the
repository.

    python bench/data/formats_walk/make_corpus.py /tmp/formats_walk
"""
import sys
from pathlib import Path

import docx
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("formats_walk_corpus")
out.mkdir(parents=True, exist_ok=True)

pages = [  # a three-page PDF handbook, text drawn line by line as a word processor would lay it out
 ["Acme Employee Handbook", "", "1. Working hours",
  "Our core working hours are 10:00 to 16:00 on weekdays. Outside the core hours, employees",
  "may arrange their time freely, provided the team agrees. Overtime must be approved by a manager",
  "in advance and is compensated with time off at a rate of one and a half hours per hour worked."],
 ["2. Holidays", "Every full-time employee receives 28 days of paid holiday per calendar year.",
  "Up to five unused days may be carried over into the first quarter of the next year.",
  "Holiday requests are made in the HR portal at least two weeks before the first day off.",
  "", "3. Sick leave", "If you are ill, tell your manager before 9:30 on the first day.",
  "A doctor's note is required from the fourth consecutive day of absence."],
 ["4. Equipment", "New employees receive a laptop on their first day. Lost or stolen equipment must be",
  "reported to the IT helpdesk within 24 hours at helpdesk@acme.example.",
  "", "5. Expenses", "Travel expenses are reimbursed within 30 days of submitting receipts.",
  "Meals during business travel are covered up to 45 euros per day."],
]
pdf = canvas.Canvas(str(out / "handbook.pdf"), pagesize=A4)
for lines in pages:
    for row, line in enumerate(lines):
        pdf.drawString(50, 800 - 18 * row, line)
    pdf.showPage()
pdf.save()

page = """<!doctype html><html><head><title>Nimbus Router X2 - Product page</title></head><body>
<nav><a href="/">Home</a> | <a href="/shop">Shop</a> | <a href="/support">Support</a></nav>
<main><h1>Nimbus Router X2</h1>
<p>The Nimbus Router X2 is a tri-band Wi-Fi 7 router for homes up to 250 square metres.</p>
<h2>Specifications</h2>
<table><tr><th>Feature</th><th>Value</th></tr>
<tr><td>Ports</td><td>4 x 2.5 GbE LAN, 1 x 10 GbE WAN</td></tr>
<tr><td>Power consumption</td><td>18 W typical, 32 W maximum</td></tr>
<tr><td>Warranty</td><td>3 years</td></tr></table>
<h2>Resetting the router</h2>
<p>To restore factory settings, hold the reset button on the back for 15 seconds until the light blinks orange.
All settings, including the Wi-Fi password, are erased.</p>
<h2>Firmware updates</h2>
<p>The router checks for firmware updates every night at 3:00 and installs them automatically.
Automatic updates can be turned off under Settings &gt; System &gt; Updates.</p>
</main><footer>Copyright 2026 Nimbus Networks. Privacy policy. Cookie settings.</footer></body></html>"""
(out / "router.html").write_text(page)

notes = docx.Document()
notes.add_heading("Project Falcon kickoff meeting", 1)
notes.add_paragraph("Date: 14 March 2026. Attendees: Priya Nair, Tom Becker, Lin Wei.")
notes.add_paragraph("The project will migrate the billing system from Oracle to PostgreSQL by the end of September.")
notes.add_paragraph("Tom Becker owns the data migration; Lin Wei owns the test plan.")
milestones = notes.add_table(rows=3, cols=3)
for row, cells in enumerate([["Milestone", "Owner", "Due"], ["Schema frozen", "Priya Nair", "30 April"],
                             ["Dry-run migration", "Tom Becker", "15 July"]]):
    for column, text in enumerate(cells):
        milestones.cell(row, column).text = text
notes.add_paragraph("The budget for external consultants is capped at 120,000 euros.")
notes.save(out / "falcon-kickoff.docx")

policy = docx.Document()
policy.add_heading("差旅报销制度", 1)
policy.add_paragraph("员工出差产生的交通费和住宿费可以报销。报销申请须在出差结束后十五个工作日内提交。")
policy.add_paragraph("一线城市的住宿标准为每晚不超过六百元，其他城市为每晚不超过四百元。")
policy.add_paragraph("乘坐飞机须选择经济舱；高铁可选择二等座。超出标准的部分由员工自行承担。")
policy.add_paragraph("报销须附上发票原件，电子发票须打印并签名。")
policy.save(out / "报销制度.docx")

(out / "retry.py").write_text('''"""Retry helpers for the billing client."""
import time

MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 2.0


def with_retry(call, attempts: int = MAX_ATTEMPTS):
    """Call `call()` until it succeeds, waiting BACKOFF_SECONDS * 2**n between attempts."""
    for attempt in range(attempts):
        try:
            return call()
        except ConnectionError:
            time.sleep(BACKOFF_SECONDS * 2 ** attempt)
    raise RuntimeError("billing service unreachable after %d attempts" % attempts)
''')

(out / "products.csv").write_text("""sku,name,price_eur,stock,warehouse
NB-100,Nimbus Mesh Node,89.00,120,Leipzig
NB-200,Nimbus Router X2,249.00,35,Leipzig
NB-300,Nimbus Outdoor AP,179.50,0,Rotterdam
NB-400,Nimbus Travel Router,59.90,410,Rotterdam
""")
(out / "oncall.json").write_text('{"team": "billing", "rotation": [{"week": "2026-W10", "primary": "Tom Becker", '
                                 '"secondary": "Lin Wei"}, {"week": "2026-W11", "primary": "Priya Nair", '
                                 '"secondary": "Tom Becker"}], "escalation_phone": "+49 30 5550 1234"}\n')
