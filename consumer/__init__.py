"""currents-consumer: Braze Currents (Avro) to Amplitude, as a Kafka daemon or a file replay."""

__version__ = "0.1.0"
