"""Metadata helpers: numeric counts the UI plots across partitions, markdown previews."""


from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd

from credit_pipeline.stages.escaping import markdown_cell


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
