"""Failures that differ only by per-job details share a fingerprint; causes do not."""

import pytest

from workers.dead_letters.fingerprints import failure_fingerprint, normalise_message


@pytest.mark.parametrize(("first", "second"), [
    ("card declined for order 17", "card declined for order 18"),
    ("user 3f2a9c1e-1111-2222-3333-444455556666 missing",
     "user 0b7c44e2-aaaa-bbbb-cccc-ddddeeeeffff missing"),
    ("bounced: alice@example.com", "bounced: bob.smith+x@mail.example.org"),
    ("stale at 2026-11-27T10:00:00Z", "stale at 2026-12-01 23:59:59.123+01:00"),
    ("invoice in_1MxAbCdEf9 not found", "invoice in_9ZzYyXxWw1 not found"),
    ("object at 0x7f3a2b1c4d50", "object at 0x7f00aa11bb22"),
    ("timeout after 5.5 s", "timeout  after 30 s"),
])
def test_per_job_details_are_masked(first, second):
    assert normalise_message(first) == normalise_message(second)
    assert failure_fingerprint(task_name="t", exception_type="E", message=first) == \
        failure_fingerprint(task_name="t", exception_type="E", message=second)


def test_task_exception_and_wording_each_tell_causes_apart():
    base = {"task_name": "a.send", "exception_type": "x.Timeout", "message": "slow smtp"}
    fingerprints = {failure_fingerprint(**base),
                    failure_fingerprint(**{**base, "task_name": "a.other"}),
                    failure_fingerprint(**{**base, "exception_type": "x.Refused"}),
                    failure_fingerprint(**{**base, "message": "smtp refused"})}
    assert len(fingerprints) == 4


def test_words_are_not_mistaken_for_ids():
    assert normalise_message("decade faced a cafe") == "decade faced a cafe"
    assert normalise_message("sha256 utf8 mismatch") == "sha256 utf8 mismatch"
