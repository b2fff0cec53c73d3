"""Kafka: the consumer-group source of ``run``, the aiokafka client around it, and the dead-letter topic.

Only this package (and nothing else in the product) talks to aiokafka.
"""
