"""What must hold before a suite starts: its data, its schedules, this machine and its network."""
