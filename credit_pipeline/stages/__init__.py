"""Each pipeline step as plain Python; Dagster assets and the CLI both call these."""
