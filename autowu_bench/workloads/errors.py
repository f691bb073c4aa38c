"""Errors raised by the workloads."""


class DataError(ValueError):
    """A data set is missing or broken.

    The message names the path that was looked at and how to get the data, so a suite can stop before
    any trial starts and tell the user exactly what to do.
    """
