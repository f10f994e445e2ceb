"""Metadata helpers: numeric counts the UI plots across partitions, markdown previews, Dagster tables."""


from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd

from credit_pipeline.stages.escaping import _CONTROL, MAX_CELL, markdown_cell

TABLE_ROW_LIMIT = 1000


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], limit: int = 20) -> dg.MetadataValue:
    """A markdown preview of the first ``limit`` rows (the rest are counted, not shown); every cell escaped."""
    if not rows:
        return dg.MetadataValue.md("_none_")
    shown = [{c: markdown_cell(r.get(c)) for c in columns} for r in list(rows)[:limit]]
    frame = pd.DataFrame(shown, columns=list(columns))
    more = f"\n\n_{len(rows) - limit} more not shown_" if len(rows) > limit else ""
    return dg.MetadataValue.md(frame.to_markdown(index=False) + more)


def ints(**values: int | float) -> dict[str, dg.MetadataValue]:
    return {k: (dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.float(float(v))) for k, v in values.items()}


def text_cell(value: Any) -> str | None:
    """Outside text for a Dagster table cell: one line, at most 200 characters (as ``markdown_cell``).

    The UI renders table cells as plain text (React escapes them), so Markdown punctuation is kept as
    it is: a backslash would show. Control and line-separator characters become spaces.
    """
    if value is None:
        return None
    text = _CONTROL.sub(" ", str(value)).strip()
    return text[: MAX_CELL - 1] + "…" if len(text) > MAX_CELL else text


def table(rows: Sequence[dict[str, Any]], columns: Sequence[dg.TableColumn], limit: int = TABLE_ROW_LIMIT) -> dg.MetadataValue:
    """A Dagster table (``TableMetadataValue``: a schema and typed records) of the first ``limit`` rows.

    String cells go through ``text_cell``; ``None`` stays null (the UI shows an empty cell).
    """
    records = [dg.TableRecord({c.name: text_cell(v) if isinstance(v := r.get(c.name), str) else v for c in columns})
               for r in list(rows)[:limit]]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=list(columns)))
