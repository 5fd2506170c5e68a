"""Infrastructure: settings shared by every part, the local stack, and Kafka plumbing."""
