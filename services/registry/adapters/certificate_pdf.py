"""The printed 婚育证明: an A5 PDF in Chinese with the certificate's QR code (fpdf2).

The font is Noto Sans SC (SIL OFL 1.1), installed with the project by the
``pylopdf-fonts-zh-cn`` wheel; fpdf2 embeds only the glyphs used, so a page is tens of KB.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from dataclasses import dataclass
from functools import cache
from importlib import resources

import segno
from fpdf import FPDF

MARITAL_STATUS = {"unmarried": "未婚", "married": "已婚", "divorced": "离婚", "widowed": "丧偶"}
FONT = "NotoSansSC"


@dataclass(frozen=True)
class PrintedCertificate:
    number: str
    holder_name: str
    holder_id_masked: str
    marital_status: str
    children_count: int
    issuer_code: str
    issuer_name: str
    issued_on: dt.date
    valid_until: dt.date
    token: str


@cache
def _font_path() -> str:
    return str(resources.files("pylopdf_fonts_zh_cn") / "NotoSansSC-Regular.otf")


def _date(d: dt.date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _qr_png(token: str) -> io.BytesIO:
    out = io.BytesIO()
    segno.make(token, error="m", micro=False).save(out, kind="png", scale=8, border=4)
    out.seek(0)
    return out


def render(cert: PrintedCertificate) -> bytes:
    """One A5 page: title, the minimal fields, issuer and dates, and the signed QR code."""
    with warnings.catch_warnings():  # fpdf2 warns that A5 was corrected in 2.8.5: it is right now
        warnings.simplefilter("ignore", UserWarning)
        pdf = FPDF(orientation="portrait", unit="mm", format="A5")
    pdf.set_title(f"婚育证明 {cert.number}")
    pdf.set_creator("migrant-exchange registry")
    pdf.set_auto_page_break(auto=False)
    pdf.add_font(FONT, "", _font_path())
    pdf.add_page()
    pdf.set_draw_color(120, 30, 30)
    pdf.set_line_width(0.8)
    pdf.rect(8, 8, 132, 194)

    pdf.set_font(FONT, size=24)
    pdf.set_xy(8, 16)
    pdf.cell(132, 12, "婚育证明", align="C")
    pdf.set_font(FONT, size=10)
    pdf.set_xy(8, 29)
    pdf.cell(132, 6, "流动人口婚育证明 · Marriage and childbearing certificate", align="C")
    pdf.set_xy(8, 36)
    pdf.cell(132, 6, f"证明编号 No. {cert.number}", align="C")

    rows = [
        ("姓名", cert.holder_name),
        ("公民身份号码", cert.holder_id_masked),
        ("婚姻状况", MARITAL_STATUS.get(cert.marital_status, cert.marital_status)),
        ("子女数", f"{cert.children_count} 人"),
        ("签发机关", f"{cert.issuer_name}（{cert.issuer_code}）"),
        ("签发日期", _date(cert.issued_on)),
        ("有效期至", _date(cert.valid_until)),
    ]
    y = 48.0
    for label, value in rows:
        pdf.set_font(FONT, size=11)
        pdf.set_xy(16, y)
        pdf.cell(34, 8, label)
        pdf.set_font(FONT, size=13)
        pdf.set_xy(50, y)
        pdf.cell(84, 8, value)
        y += 9.5

    pdf.image(_qr_png(cert.token), x=39, y=118, w=70, h=70)
    pdf.set_font(FONT, size=9)
    pdf.set_xy(8, 189)
    pdf.cell(132, 5, "扫描二维码核验真伪与状态 · Scan the QR code to verify", align="C")
    return bytes(pdf.output())
