"""The emulated AWS fahr's SageMaker tests and demo run against (test infrastructure, not product)."""
