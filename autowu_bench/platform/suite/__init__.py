"""A suite: its schema, reading its YAML, --set and --only, loading, expansion into trials and searches."""
