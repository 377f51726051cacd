"""The binary columnar body of ``POST /v1/score/batch`` (layout in :mod:`fraud_core.scoring_wire`),
validated as strictly as the JSON body.

The per-row fields are checked by pydantic with the very constraints of
:class:`~inference_service.api.payloads.ScoreItem` (derived from its fields, not restated), one
list per column; the features, which are most of the body, by one vectorised pass against
:data:`fraud_core.feature_catalog.FEATURE_BOUNDS`. A refusal is FastAPI's 422 list; an error of one
row has the location the JSON body would give it (``body, items, <row>, <field>``), so a client
handles both the same way, and echoes the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from fraud_core.feature_catalog import FEATURE_BOUNDS, FEATURE_NAMES
from fraud_core.scoring_wire import FEATURES, FLOAT64, ITEM_COLUMNS, decode
from inference_service.api.payloads import ScoreItem

Error = dict[str, Any]
_LOW = np.array([FEATURE_BOUNDS[name][0] for name in FEATURE_NAMES])
_HIGH = np.array([FEATURE_BOUNDS[name][1] for name in FEATURE_NAMES])
_KNOWN = frozenset((*ITEM_COLUMNS, FEATURES))


def _columns_adapter() -> TypeAdapter[Any]:
    fields = {}
    for name in ITEM_COLUMNS:
        info = ScoreItem.model_fields[name]
        fields[name] = list[Annotated[info.annotation, info]]  # type: ignore[name-defined]
    typed = TypedDict("Columns", fields)  # type: ignore[misc]
    typed.__pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[attr-defined]
    adapter: TypeAdapter[Any] = TypeAdapter(typed)
    return adapter


_COLUMNS = _columns_adapter()


class InvalidColumns(Exception):
    """The body is refused; ``errors`` is the 422 ``detail`` list, in FastAPI's format."""

    def __init__(self, errors: list[Error]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ColumnarBatch:
    """A validated batch: the rows' event ids and the model input, columns in FEATURE_NAMES order."""

    event_ids: list[str]
    x: npt.NDArray[np.float64]


def _error(kind: str, loc: Sequence[str | int], msg: str, value: Any) -> Error:
    return {"type": kind, "loc": ("body", *loc), "msg": msg, "input": value}


def parse_batch(body: bytes) -> ColumnarBatch:
    """The rows of a binary body, every field and feature checked.

    Raises:
        InvalidColumns: anything the JSON body would refuse, plus a column that is not one value per
            row; each error names the column (and the row, and echoes the value, where there is one).
    """
    try:
        columns = decode(body)
    except ValueError as exc:
        raise InvalidColumns([_error("msgpack_invalid", (), f"Invalid msgpack: {exc}", None)]) from exc
    if not isinstance(columns, dict):
        msg = "Input should be a map of columns (event_id, ..., features)"
        raise InvalidColumns([_error("dict_type", (), msg, type(columns).__name__)])
    event_ids = columns.get("event_id")
    if not isinstance(event_ids, list) or not event_ids:
        msg = "Field required: an array of one event_id per row, at least one row"
        raise InvalidColumns([_error("missing", ("event_id",), msg, event_ids)])
    n = len(event_ids)
    errors = [
        _error("extra_forbidden", (name,), "Extra inputs are not permitted", value)
        for name, value in columns.items()
        if name not in _KNOWN
    ]
    for name in ITEM_COLUMNS:
        column = columns.get(name)
        if column is None:
            errors.append(_error("missing", (name,), "Field required", None))
        elif not isinstance(column, list) or len(column) != n:
            size = len(column) if isinstance(column, list) else type(column).__name__
            msg = f"Column should be an array of {n} values (one per event_id), not {size}"
            errors.append(_error("column_length", (name,), msg, size))
    x, feature_errors = _features(columns.get(FEATURES), n)
    errors += feature_errors
    if errors:
        raise InvalidColumns(errors)
    try:
        _COLUMNS.validate_python(columns)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            column, row, *_ = err["loc"]
            errors.append({**err, "loc": ("body", "items", row, column)})
    assert x is not None
    errors += _out_of_bounds(x)
    if errors:
        raise InvalidColumns(errors)
    return ColumnarBatch(event_ids, x)


def _features(block: Any, n: int) -> tuple[npt.NDArray[np.float64] | None, list[Error]]:
    """The n x features matrix of the ``features`` map, or the errors of its shape."""
    if not isinstance(block, dict):
        msg = "Field required: a map from every feature name to n float64 (bin)"
        return None, [_error("missing", (FEATURES,), msg, None if block is None else type(block).__name__)]
    errors = [
        _error("extra_forbidden", (FEATURES, name), "Extra inputs are not permitted", "unknown feature")
        for name in block
        if name not in FEATURE_BOUNDS
    ]
    x = np.empty((len(FEATURE_NAMES), n), dtype=np.float64)
    for j, name in enumerate(FEATURE_NAMES):
        column = block.get(name)
        if column is None:
            errors.append(_error("missing", (FEATURES, name), "Field required (in every row)", None))
        elif not isinstance(column, bytes) or len(column) != 8 * n:
            size = f"{len(column)} bytes" if isinstance(column, bytes) else type(column).__name__
            msg = f"Feature column should be bin of {n} little-endian float64 ({8 * n} bytes), not {size}"
            errors.append(_error("column_length", (FEATURES, name), msg, size))
        else:
            x[j] = np.frombuffer(column, dtype=FLOAT64)
    return (None, errors) if errors else (x.T, [])


def _out_of_bounds(x: npt.NDArray[np.float64]) -> list[Error]:
    """One error per value that is not finite or outside its feature's bounds, row by row."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x) | (x < _LOW) | (x > _HIGH)
    if not bad.any():
        return []
    errors = []
    for row, j in zip(*np.nonzero(bad), strict=True):
        name, value = FEATURE_NAMES[j], float(x[row, j])
        low, high = FEATURE_BOUNDS[name]
        loc = ("items", int(row), FEATURES, name)
        if not np.isfinite(value):
            errors.append(_error("finite_number", loc, "Input should be a finite number", value))
        elif value < low:
            msg = f"Input should be greater than or equal to {low:g}"
            errors.append({**_error("greater_than_equal", loc, msg, value), "ctx": {"ge": low}})
        else:
            msg = f"Input should be less than or equal to {high:g}"
            errors.append({**_error("less_than_equal", loc, msg, value), "ctx": {"le": high}})
    return errors
