"""The Kafka runtime: the same kernel, partitioned by device shards across worker processes."""
