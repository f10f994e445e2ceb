"""Metadata helpers: numeric counts the UI plots across partitions, markdown previews."""


from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], limit: int = 20) -> dg.MetadataValue:
    """A markdown preview of the first ``limit`` rows (the rest are counted, not shown)."""
    if not rows:
        return dg.MetadataValue.md("_none_")
    frame = pd.DataFrame(list(rows)[:limit], columns=list(columns))
    more = f"\n\n_{len(rows) - limit} more not shown_" if len(rows) > limit else ""
    return dg.MetadataValue.md(frame.to_markdown(index=False) + more)


def ints(**values: int | float) -> dict[str, dg.MetadataValue]:
    return {k: (dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.float(float(v))) for k, v in values.items()}
