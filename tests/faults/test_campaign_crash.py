"""A bulk worker killed mid-newsletter: every recipient gets it, and only the batches in
flight at the kill (sent, not yet committed) can reach anyone twice."""

import uuid
from collections import Counter

from django.contrib.auth import get_user_model

from apps.notifications.models import Campaign, Kind, Notification
from apps.notifications.services import campaign_create
from tests.faults.brokers import broker_env
from tests.faults.conftest import BOTH_BROKERS
from tests.faults.harness import Processes
from tests.fixtures import wait_for

RECIPIENTS = 120
SEND_BATCH = 5
CONCURRENCY = 2  # chunks in flight at once, each with at most one batch uncommitted
CAMPAIGN = {"NOTIFICATIONS_SEND_BATCH": str(SEND_BATCH),
            "NOTIFICATIONS_RATE_PER_SECOND": "60"}  # a few seconds of sending to cut into


@BOTH_BROKERS
def test_sigkill_mid_campaign_sends_to_everyone_and_repeats_at_most_the_batches_in_flight(
        processes: Processes, fault_broker, smtp_server):
    run = uuid.uuid4().hex[:8]
    emails = [f"crash-{run}-{i}@example.com" for i in range(RECIPIENTS)]
    get_user_model().objects.bulk_create(
        get_user_model()(username=f"crash-{run}-{i}", email=email)
        for i, email in enumerate(emails))
    campaign = campaign_create(kind=Kind.NEWSLETTER, key=f"crash-{run}", subject="News",
                               body="What is new", chunk_size=40)
    first = processes.worker("doomed", fault_broker, queue="bulk", concurrency=CONCURRENCY,
                             **CAMPAIGN)
    started = processes.run(
        ["-c", "import django; django.setup(); from apps.notifications.services import "
               f"campaign_start; campaign_start(campaign_id={campaign.pk})"],
        **broker_env(fault_broker))
    assert started.returncode == 0, started.stderr

    def delivered() -> Counter:
        with smtp_server.lock:
            return Counter(item.to for item in smtp_server.delivered if item.to in emails)

    wait_for(lambda: len(delivered()) >= 30, timeout=120, what="the first recipients")
    processes.kill_group(first)  # main process and pool children, mid-batch
    first.wait(timeout=10)
    before_kill = delivered()
    processes.worker("replacement", fault_broker, queue="bulk", concurrency=CONCURRENCY,
                     **CAMPAIGN)
    wait_for(lambda: Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DONE,
             timeout=180, what="the campaign to finish after the kill")

    sent = delivered()
    assert set(sent) == set(emails), f"never sent: {sorted(set(emails) - set(sent))}"
    twice = sorted(email for email, count in sent.items() if count > 1)
    # A repeat is a message of a batch the kill cut between the provider and its commit:
    # sent before the kill, and again by the chunk's redelivery.
    assert all(before_kill[email] for email in twice), twice
    assert max(sent.values()) <= 2, sent.most_common(3)
    assert len(twice) <= SEND_BATCH * CONCURRENCY, twice
    rows = Notification.objects.filter(campaign=campaign)
    assert sorted(rows.values_list("recipient", flat=True)) == sorted(emails)
    assert set(rows.values_list("status", flat=True)) == {Notification.Status.SENT}
