"""The currents-consumer dev kit: an Amplitude and partner simulator, synthetic Currents data, an
embedded Kafka-protocol broker, a local schema registry and the demo. Not part of the product."""
