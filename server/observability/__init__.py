"""What an operator watches a running Companion through: Prometheus metrics and structured logs."""
