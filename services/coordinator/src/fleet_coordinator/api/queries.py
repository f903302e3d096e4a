"""Integers in a query string (or a console form) are written in decimal digits, nothing else.

pydantic reads an integer from text leniently: ``5_0`` as 50 (Python's digit
grouping), ``+5``, `` 5 `` and ``5.0`` as 5. A query string is typed by hand or built
by a client's code, and either way such text is a mistake to show, not a number to
guess at (``limit=5_0`` was meant as 5 or 50, nobody can tell): it is refused as
``limit=abc`` is, 422 naming the parameter in ``details.errors[].loc``.
"""

from __future__ import annotations

import re

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = ["DECIMAL", "decimal_int"]

_DECIMAL = re.compile(r"-?[0-9]{1,20}")
"""ASCII digits with an optional minus sign; 20 digits hold every 64-bit integer, and
bound the text a bound check converts (a 5000-digit value is refused unread)."""
_NOT_DECIMAL = "Input should be an integer written in decimal digits (as 50; not 5_0, +50 or 50.0)"


def decimal_int(value: object) -> object:
    """``value`` unchanged if it is not text or is decimal digits; else a validation error."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value) is None:
        raise PydanticCustomError("int_parsing", _NOT_DECIMAL)
    return value


DECIMAL = BeforeValidator(decimal_int)
"""Marks an ``int`` query parameter as decimal digits only. Put it after ``Query(...)``:
``Annotated[int, Query(ge=1), DECIMAL]`` (an alias holding the validator, or the
validator first, drops the bounds from the OpenAPI schema, though they still apply)."""
