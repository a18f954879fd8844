"""streamrec: a streaming real-time recommender on Kafka.

The core package holds what every service shares: settings, the click-event contract,
the record types that processors consume and produce, the in-process bus used by
``demo`` and replay, and the loop that binds a processor to Kafka.
"""

__version__ = "0.1.0"
