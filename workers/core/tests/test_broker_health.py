"""The quick "does the broker answer" of the outbox and of `/readyz`, against real brokers:
a RabbitMQ cluster's node list counts as up while one node of it answers."""

import pytest

from workers.core.broker_health import broker_reachable, rabbitmq_error
from workers.ops.health import broker_error

LIVE = "amqp://guest:guest@127.0.0.1:5672//"
DEAD = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens on port 1


@pytest.mark.parametrize("urls", [f"{DEAD};{LIVE}", f"{LIVE};{DEAD}", LIVE])
def test_a_node_list_answers_while_any_node_of_it_does(settings, urls):
    settings.CELERY_BROKER_URL, settings.BROKER_IS_RABBITMQ = urls, True

    assert rabbitmq_error() is None
    assert broker_reachable()
    assert broker_error() is None


def test_a_node_list_with_no_node_answering_is_down_with_the_error(settings):
    settings.CELERY_BROKER_URL, settings.BROKER_IS_RABBITMQ = f"{DEAD};{DEAD}", True

    assert isinstance(rabbitmq_error(), Exception)
    assert not broker_reachable()
    assert broker_error() is not None
