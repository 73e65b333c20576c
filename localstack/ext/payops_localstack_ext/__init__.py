"""payops LocalStack extension: moto-backed providers (see providers.py)."""

__version__ = "0.1.0"
