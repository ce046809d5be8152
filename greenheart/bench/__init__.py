"""`greenheart bench`: how many hearts a monitor holds, at what latency and cost."""
