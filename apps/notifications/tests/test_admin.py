"""The campaign admin refuses a campaign that could never be sent."""

import pytest
from django.urls import reverse

from apps.notifications.models import Campaign, Kind


@pytest.mark.django_db
def test_a_campaign_of_chunks_of_zero_is_refused(admin_client):
    page = admin_client.post(reverse("admin:notifications_campaign_add"), {
        "kind": Kind.NEWSLETTER, "key": "zero", "subject": "s", "body": "b",
        "chunk_size": "0"})
    assert page.status_code == 200
    assert "greater than or equal to 1" in page.content.decode()
    assert not Campaign.objects.exists()
