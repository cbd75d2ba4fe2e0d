"""The cluster's metadata: topics, partitions, topic ids and configs, as one image that
changes by deltas (Kafka's ``MetadataImage`` / ``MetadataDelta`` / ``MetadataPublisher``).

Today the source is the local data directory (:mod:`.local_controller`); the cluster work
replaces the source with one backed by a consensus engine, and every publisher (the replica
manager, the group coordinator) keeps working unchanged.
"""
