"""Running a suite on Ray: the session, Tune over trials and searches, the trial driver, the AutoWU controller
actor, the workers' training loop."""
