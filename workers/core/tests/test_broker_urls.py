"""Broker URLs as operators see them: every password of a failover list masked."""

from hypothesis import given
from hypothesis import strategies as st

from workers.core.broker_urls import masked_url


def test_each_url_of_a_failover_list_is_masked():
    assert masked_url("sentinel://:pw@a:1/0;sentinel://:pw@b:2/0;sentinel://c:3/0") == (
        "sentinel://:**@a:1/0;sentinel://:**@b:2/0;sentinel://c:3/0")
    assert masked_url("amqp://guest:pw@a:5672//;amqp://guest:pw@b:5672//") == (
        "amqp://guest:**@a:5672//;amqp://guest:**@b:5672//")
    assert masked_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@given(password=st.text(alphabet=st.characters(codec="ascii", categories=("L", "N")),
                        min_size=4),
       hosts=st.lists(st.sampled_from(["a", "b.example", "10.0.0.1"]), min_size=1,
                      max_size=4))
def test_no_password_of_the_list_shows(password, hosts):
    url = ";".join(f"sentinel://:{password}@{host}:26379/0" for host in hosts)
    assert f":{password}@" not in masked_url(url)
