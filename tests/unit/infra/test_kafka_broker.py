"""infra/kafka_broker.py: what a starting cluster may answer is waited out, not fatal."""

from __future__ import annotations

import kafka.errors as kafka_errors

from infra.kafka_broker import is_transient_kafka


def test_kafka_errors_of_a_cluster_still_starting_are_transient() -> None:
    """ensure_topics on a new 3-node cluster met UnknownBrokerIdError (the controller's metadata
    not yet known): it is waited out; a refused request is not."""
    assert is_transient_kafka(kafka_errors.UnknownBrokerIdError(3))
    assert is_transient_kafka(kafka_errors.NodeNotReadyError(1))
    assert is_transient_kafka(kafka_errors.MetadataEmptyBrokerList())
    assert is_transient_kafka(ConnectionRefusedError())
    assert not is_transient_kafka(kafka_errors.TopicAuthorizationFailedError())
    assert not is_transient_kafka(ValueError("bad config"))
