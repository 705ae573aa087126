"""The fault tests' own reading of a broker: the counts every settle and idle check trusts."""

import pytest

from tests.faults.brokers import broker_queue, message_counts
from tests.faults.conftest import BOTH_BROKERS
from tests.fixtures import publisher_connection


@BOTH_BROKERS
def test_counts_are_exact_the_moment_a_queue_is_declared(fault_broker):
    """RabbitMQ's statistics read a new quorum queue as empty for seconds; a count taken
    from them let an idle check pass with every message still waiting."""
    queue = broker_queue(fault_broker, "critical")
    with publisher_connection(fault_broker) as connection:
        producer = connection.Producer()
        queue(connection.default_channel).declare()
        assert message_counts(fault_broker) == (0, 0)
        for number in range(3):
            producer.publish({"number": number}, exchange=queue.exchange,
                             routing_key=queue.routing_key)
        assert message_counts(fault_broker) == (3, 0)
        message = queue(connection.default_channel).get(no_ack=False)
        assert message_counts(fault_broker) == (2, 1)
        message.ack()
        assert message_counts(fault_broker) == (2, 0)


@pytest.mark.parametrize("fault_broker", ["rabbitmq"], indirect=True)
def test_a_queue_not_declared_yet_holds_nothing(fault_broker):
    assert message_counts(fault_broker, queue="not-declared") == (0, 0)
