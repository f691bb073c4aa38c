"""MLflow tracking: the suite's parent run, one nested child run per trial, rank 0's trial logger.

Every operation a trial or the suite's end logs goes through a spool on disk and is sent from there, so
tracking never holds training up and drops nothing while MLflow is away. The modules:

    client.py      the MLflow client calls (experiment, parent run, child runs, params, tags, summaries,
                   statuses) and ``RunStatus``
    operations.py  the spooled operations, one dataclass a kind: their JSON lines and how each applies itself
    spool.py       ``Spool``: the append-only log of those operations on disk
    delivery.py    sending spools to MLflow (``send_spools``, ``DeliveryReport``): the suite's end, --sync, --resume
    lifecycle.py   the trial driver's ``open_trial`` / ``close_trial`` and the parent run's spooled end
    trial_logger.py ``TrialLogger``: rank 0's metrics through the trial's spool, and its sender thread
    server.py      ``LocalMlflowServer``: the local ``mlflow server``, run under ``watchdog.py``
    env.py         ``MLFLOW_ENV`` and ``apply_process_env``, set where a process starts, never at import

Import from the modules themselves; this package's ``__init__`` holds nothing else.
"""
