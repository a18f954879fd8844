"""Everything an app needs to talk to streamrec, on kafka-python and msgspec alone.

``pip install 'streamrec[client]'`` (the base install: kafka-python, crc32c, msgspec) is
enough for this module: publish clicks, read recommendations as they are published, or ask
for one and wait for the reply. Nothing here imports river, numpy, onnxruntime or torch
(``tests/unit/test_client_install.py`` imports it with those blocked).

Example (needs a broker and the services running)::

    from streamrec.client import ClickEvent, ClickPublisher, RecommendationReader, Settings, recommend

    settings = Settings(bootstrap_servers="127.0.0.1:9092")
    with ClickPublisher.from_settings(settings) as publisher:
        publisher.publish(ClickEvent(event_id="e1", user_id="u42", item_id="i7",
                                     type="click", ts=time.time()))
    rec = recommend(settings, "u42", k=5, timeout=5.0)   # request -> reply
    with RecommendationReader(settings) as reader:       # every recommendation, live
        for rec in reader: ...
"""

from __future__ import annotations

from streamrec import __version__
from streamrec.config import Settings
from streamrec.connection import KafkaAccessError, KafkaSecurity, KafkaUnreachableError
from streamrec.events import ClickEvent, encode_click
from streamrec.messages import Recommendation, RecommendationRequest, ScoredItem, encode_request
from streamrec.producers.publisher import ClickPublisher, PublishError
from streamrec.producers.reader import RecommendationReader
from streamrec.producers.request_reply import (RecommendationClient, RecommendationTimeout,
                                               RequestError, recommend)

__all__ = ["ClickEvent", "ClickPublisher", "KafkaAccessError", "KafkaSecurity",
           "KafkaUnreachableError", "PublishError", "Recommendation", "RecommendationClient",
           "RecommendationReader", "RecommendationRequest", "RecommendationTimeout",
           "RequestError", "ScoredItem", "Settings", "__version__", "encode_click",
           "encode_request", "recommend"]
