"""Looking inside and timing models: class activation maps, CPU latency."""
