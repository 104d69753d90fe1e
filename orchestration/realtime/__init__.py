"""The real-time path beside the batch one (docs/realtime.md): a Segment-compatible collector, Redis
Streams as the broker, and a stream processor that keeps live state and real-time segment membership."""
