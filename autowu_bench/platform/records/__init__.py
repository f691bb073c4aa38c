"""What a run leaves on disk: the trial specs, their outcomes, the Parquet tables, run.json; atomic writes."""
