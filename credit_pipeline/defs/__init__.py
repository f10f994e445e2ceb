"""Dagster definitions: thin assets, checks, a sensor, a schedule and the approval job over ``stages``."""
