"""How haltwatch reaches the systems around it, below every package that does: Kafka topics and their
declaration, Kafka transport security and credentials, and the masking of secrets in logs and errors.

``connectors/``, ``streams/`` and the ``haltwatch`` CLI all import from here; nothing here imports them.
"""
