"""The processes: crawl worker loop, monitor, shard membership, the `crawler` CLI, the demo."""
