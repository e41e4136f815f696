"""Process and event-loop plumbing: waiting on Redis, sharing the loop, metrics, sockets, the data
dir, the embedded Redis."""
