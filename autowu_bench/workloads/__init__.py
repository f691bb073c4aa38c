"""workloads of autowu-bench."""
