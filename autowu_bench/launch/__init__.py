"""A suite run from the command line to its end, above the platform and the dashboards:

    cli          the command line (``autowu-bench``, ``run_suite.py``): flags, ``--sync``, exit statuses
    catalogue    what there is to run (--list): the packaged suites and the workloads
    estimate     a dry run's estimate of the suite's cost (device-hours, wall time)
    plan         what a run runs: a new run's suite, trials and folder, checked; or a resumed run's
    suite_run    SuiteRun: MLflow and Ray started, the trials and searches run, the tables and report
                 written and logged, MLflow's end
    stop         SIGINT / SIGTERM: a clean stop, then an immediate one
    ui           --ui [RUN_DIR] (make ui RUN=...): the MLflow UI over the store a run wrote to
    exit_status  the exit statuses
"""
