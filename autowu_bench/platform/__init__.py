"""platform of autowu-bench."""
