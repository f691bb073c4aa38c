"""The platform: a suite file becomes trials, Ray Tune and Ray Train run them, MLflow and Parquet record them.

Subpackages, each importing only those listed before it (the layering the code keeps):

    records/    what a run leaves on disk: TrialSpec, TrialOutcome (summary.json), the Parquet tables,
                run.json, atomic writes
    suite/      a suite file: schema, YAML reading, --set/--only, loading, expansion into trials and searches
    checks/     what must hold before anything starts: data, schedules, the machine and its network
    tracking/   MLflow: runs, the on-disk spool, sending it, rank 0's trial logger, the local server
    execution/  Ray: the session, Tune over the trials and searches, the trial driver, the AutoWU
                controller actor, the workers' training loop
"""
