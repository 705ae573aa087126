"""What a task id must be for the platform to keep records under it."""


def task_id_usable(value: object) -> bool:
    """Non-empty text that UTF-8 can carry: Redis keys, result keys, log lines and rows are
    built from a task id. A producer can write anything into a message (a number, a list,
    a lone surrogate): Celery stopped the worker on some, and ran others while their
    records (result, retries, dead letter) failed to be written."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
