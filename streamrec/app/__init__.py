"""Floor 5, composition: the ``streamrec`` CLI and its commands, the demo pipeline,
replay evaluation and the local Kafka launcher. Nothing below imports from here.
"""
