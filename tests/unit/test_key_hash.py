"""The partition a key is sent to: ``send_all`` hashes keys with a compiled murmur2, and must
pick the partition aiokafka's own partitioner (the Java client's) would, or a subject's events
sent one way and the other would land on two partitions and lose their order."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.kafka import _key_hash


@given(st.binary(max_size=300))
def test_the_key_hash_is_the_java_clients_murmur2(key: bytes) -> None:
    assert _key_hash(key) == murmur2(key) & 0x7FFFFFFF


@given(st.binary(min_size=1, max_size=100), st.integers(min_value=1, max_value=64))
def test_a_key_gets_the_partition_the_default_partitioner_gives_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partitions[_key_hash(key) % count] == DefaultPartitioner()(key, partitions, partitions)


def test_known_hashes_of_the_java_client() -> None:
    # Utils.murmur2 values from Apache Kafka's own unit test (UtilsTest.testMurmur2).
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in cases.items():
        assert _key_hash(key) == signed & 0x7FFFFFFF
