"""dashboards of autowu-bench."""
