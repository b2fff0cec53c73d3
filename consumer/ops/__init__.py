"""Operations: Prometheus metrics, logs, the probe and metrics server, run summaries, process tuning."""
