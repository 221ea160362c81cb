"""Free text that stays data: names and notes never begin the way a spreadsheet formula does.

OWASP's CSV-injection guidance: a cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is run as a formula by Excel, LibreOffice and WPS when a CSV or XLSX file is
opened (``=HYPERLINK(...)``, DDE such as ``-2+3+cmd|' /C calc'!A0``). The one rule, here:

* at every edge that takes free text (the registry and exchange APIs, ``exchangectl import``)
  such a value is **refused**, with the rule ``no-formula-prefix``: a 422 problem+json naming the
  field from the API, a line of the rejects file from the import. No name or note needs to begin
  so, and refusing keeps the record exactly what the clerk sees (an escaped copy would not be).
  Leading white space, tabs and carriage returns included, is stripped first (neutralised: the
  edges always stripped it), so ``"\t=1+2"`` is refused and ``"\t张三"`` is 张三; the
  full-width forms (＝ ＋ － ＠) count too, as a Chinese IME types them;
* every CSV or XLSX file the system writes passes its cells through ``spreadsheet_cell``, which
  gives such text OWASP's leading apostrophe: data that came in before the rule, or from another
  jurisdiction, is still shown, never run.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

FORMULA_CHARS = "=+-@＝＋－＠"
CONTROL_PREFIXES = ("\t", "\r")
RULE = "no-formula-prefix"
MESSAGE = (
    "must not begin with =, +, -, @, a tab or a carriage return "
    "(a spreadsheet would run it as a formula: OWASP CSV injection)"
)
# The same rule for the OpenAPI document, in ECMA-262 syntax: after any white space (stripped),
# nothing or a first character that is neither white space nor a formula character.
PATTERN = r"^\s*([^=+\-@＝＋－＠\s]|$)"
_FORMULA = frozenset(FORMULA_CHARS)
_CONTROL = frozenset(CONTROL_PREFIXES)


def looks_like_formula(value: str) -> bool:
    """True when a spreadsheet opening this text in a cell would run it as a formula."""
    first = value[:1]
    if first in _FORMULA or first in _CONTROL:
        return True
    # white space in front is looked through (a bulk import checks every cell: the common case
    # of a plain first character costs no copy)
    return first.isspace() and value.lstrip()[:1] in _FORMULA


def check_plain_text(value: str) -> str:
    """Return the text if it is data, else raise pydantic's error with the rule ``no-formula-prefix``."""
    if looks_like_formula(value):
        raise PydanticCustomError(RULE, MESSAGE)
    return value


def check_plain_value(value: object) -> object:
    """The same rule for a value that may also be a number or null (a correction's new value)."""
    return check_plain_text(value) if isinstance(value, str) else value


class _DocumentRule:
    """Puts the rule into the JSON schema (pattern and description) of the field that carries it."""

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out.setdefault("pattern", PATTERN)
        out.setdefault("description", f"text, never a formula: {MESSAGE}")
        return out


# Leading and trailing white space is stripped (a tab or CR in front is neutralised, as both edges
# always did), then a formula character in front is refused.
PlainText = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(check_plain_text), _DocumentRule()
]


def spreadsheet_cell(value: object) -> object:
    """A value for a CSV or XLSX cell: text a spreadsheet would run gets OWASP's leading apostrophe."""
    if isinstance(value, str) and looks_like_formula(value):
        return "'" + value
    return value
