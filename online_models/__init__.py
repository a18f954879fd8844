"""Pure, I/O-free online learners: user state, popularity and recency, baselines.

Everything here learns from events one at a time (``learn_one``) and answers without
mutating state (``recommend``). No Kafka, files, threads or wall clocks: time comes in with
the event. That is what lets the same objects run in the consumers, in ``demo`` and in
replay evaluation.
"""
