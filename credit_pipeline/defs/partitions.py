"""One weekly partitions definition for every stage: Monday weeks in UTC, the open week included."""


from datetime import date

import dagster as dg


def weekly_epochs(anchor: date) -> dg.WeeklyPartitionsDefinition:
    """Partition keys are epoch keys (``YYYY-MM-DD``, a Monday); ``end_offset=1`` adds the open week."""
    return dg.WeeklyPartitionsDefinition(
        start_date=anchor.isoformat(), day_offset=1, end_offset=1, timezone="UTC", fmt="%Y-%m-%d"
    )
