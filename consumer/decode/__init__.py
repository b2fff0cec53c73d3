"""Decode: bytes to Currents records (Avro containers, Confluent wire format, plain Avro), the
schema-registry client and the shipped Currents schemas (``schemas/*.avsc``).
"""
